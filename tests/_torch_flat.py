"""A torch twin of an MLP over its flat parameter vector, for curvature and per-example tests.

`FlatTwin` holds one parameter `theta` in our flat layout (W_l row-major, b_l, gamma_l, beta_l
per layer) and runs the network from its slices, so torch's Hessian of the loss in theta is
directly comparable with ours, and `torch.func.functional_call(twin, {"theta": t}, (x,))`
swaps in any vector.
"""
import numpy as np
import torch

from kernels.batchnorm import BN_EPS
from tests._torch_mlp import TORCH_ACTIVATIONS


class FlatTwin(torch.nn.Module):
    """forward(x) returns (output, output-layer pre-activation h) in float64."""

    def __init__(self, net):
        super().__init__()
        self.net = net
        self.theta = torch.nn.Parameter(torch.tensor(np.asarray(net.params, np.float64)))

    def forward(self, x):
        net, spec, theta = self.net, self.net.spec, self.theta
        a = h = x
        for layer, act in enumerate(net.activations):
            n_in, n_out = net.sizes[layer], net.sizes[layer + 1]
            w = theta[spec.w_off[layer]:spec.w_off[layer] + n_out * n_in].reshape(n_out, n_in)
            h = a @ w.T + theta[spec.b_off[layer]:spec.b_off[layer] + n_out]
            if spec.bn[layer]:
                h = torch.nn.functional.batch_norm(
                    h, None, None, theta[spec.g_off[layer]:spec.g_off[layer] + n_out],
                    theta[spec.beta_off[layer]:spec.beta_off[layer] + n_out], training=True,
                    momentum=0.0, eps=BN_EPS)
            a = TORCH_ACTIVATIONS[act](h, float(spec.act_param[layer]))
        return a, h


def twin_loss(net, out, h, y):
    """Our batch-mean loss in torch: cross-entropy on the logits h (rows of class
    probabilities y), or MSE summed over outputs."""
    if net.loss_name == "cross_entropy":
        return -(y * torch.log_softmax(h, dim=1)).sum() / len(y)
    return ((out - y) ** 2).sum() / len(y)


def loss_of_theta(net, x, y):
    """theta (flat torch tensor) -> the batch loss, for kernel-form targets y."""
    twin = FlatTwin(net)
    xt, yt = torch.tensor(np.asarray(x, np.float64)), torch.tensor(np.asarray(y, np.float64))

    def loss(theta):
        out, h = torch.func.functional_call(twin, {"theta": theta}, (xt,))
        return twin_loss(net, out, h, yt)
    return loss


def torch_hvp(net, x, y, v):
    """H v by double backward through the twin (float64)."""
    loss = loss_of_theta(net, x, y)
    theta = torch.tensor(np.asarray(net.params, np.float64), requires_grad=True)
    grad, = torch.autograd.grad(loss(theta), theta, create_graph=True)
    hv, = torch.autograd.grad(grad @ torch.tensor(np.asarray(v, np.float64)), theta)
    return hv.numpy()


def torch_hessian(net, x, y):
    """The full Hessian (n_params, n_params) by torch.autograd.functional.hessian."""
    theta = torch.tensor(np.asarray(net.params, np.float64))
    return torch.autograd.functional.hessian(loss_of_theta(net, x, y), theta).numpy()


def torch_per_example_grads(net, x, y):
    """(B, n_params) gradients of each example's own loss: torch.func vmap(grad) over
    functional_call of the twin."""
    twin = FlatTwin(net)
    theta = {"theta": twin.theta.detach()}

    def own_loss(params, xi, yi):
        out, h = torch.func.functional_call(twin, params, (xi[None],))
        return twin_loss(net, out, h, yi[None])
    grads = torch.func.vmap(torch.func.grad(own_loss), in_dims=(None, 0, 0))(
        theta, torch.tensor(np.asarray(x, np.float64)), torch.tensor(np.asarray(y, np.float64)))
    return grads["theta"].numpy()
