"""gradlab kernels: Numba-compiled training of multi-layer perceptrons on a flat parameter buffer.

    from kernels import MLP
    from kernels.optimizers import Adam
    net = MLP([40, 128, 128, 10], activation="tanh", init="xavier_normal", seed=0)
    loss = net.train_step(x, y, Adam(lr=1e-3))
"""
from .activations import ACTIVATIONS
from .clipping import CLIPPING, Clip
from .init import INITS
from .losses import LOSSES
from .mlp import MLP, DivergenceError
from .optimizers import OPTIMIZERS, SGD, Adam, Momentum, RMSProp
from .schedules import SCHEDULES

__all__ = ["MLP", "DivergenceError", "ACTIVATIONS", "LOSSES", "INITS", "OPTIMIZERS", "SCHEDULES",
           "CLIPPING", "Clip", "SGD", "Momentum", "RMSProp", "Adam"]
