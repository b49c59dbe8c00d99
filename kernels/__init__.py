"""gradlab kernels: Numba-compiled training of multi-layer perceptrons on a flat parameter buffer.

    from kernels import MLP
    from kernels.optimizers import Adam
    net = MLP([40, 128, 128, 10], activation="tanh", init="xavier_normal", seed=0)
    loss = net.train_step(x, y, Adam(lr=1e-3))

Every registry (ACTIVATIONS, LOSSES, INITS, OPTIMIZERS, SCHEDULES, CLIPPING) maps a name to a
frozen kernels.registry.Entry record (code, formula, flags); make_optimizer, make_schedule and
make_clip build the objects from names.
"""
from .activations import ACTIVATIONS
from .clipping import CLIPPING, Clip, make_clip
from .init import INITS
from .losses import LOSSES
from .mlp import MLP, DivergenceError
from .optimizers import OPTIMIZERS, SGD, Adam, Momentum, RMSProp, make_optimizer
from .schedules import SCHEDULES, make_schedule

__all__ = ["MLP", "DivergenceError", "ACTIVATIONS", "LOSSES", "INITS", "OPTIMIZERS", "SCHEDULES",
           "CLIPPING", "Clip", "SGD", "Momentum", "RMSProp", "Adam", "make_optimizer",
           "make_schedule", "make_clip"]
