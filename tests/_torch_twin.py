"""The one PyTorch twin of a gradlab network: a torch.nn.Module holding float64 copies of our
weights, biases and batch-norm parameters, computing what our kernels compute (every hidden
activation, batch norm with batch statistics, both losses), with every intermediate kept by
name for comparison (z, h, a per layer; after backward, delta, dW, db, dgamma, dbeta).

`FlatTwin` is the same network over ONE parameter `theta` in our flat layout (W_l row-major,
b_l, gamma_l, beta_l per layer), so torch's Hessian of the loss in theta compares directly
with ours and `torch.func.functional_call(twin, {"theta": t}, (x,))` swaps in any vector: the
double-backward Hv, the full Hessian and the per-example gradients of the curvature tests."""
import numpy as np
import torch

from kernels.batchnorm import BN_EPS

ACTIVATIONS = {
    "identity": lambda h, p: h,
    "sigmoid": lambda h, p: torch.sigmoid(h),
    "tanh": lambda h, p: torch.tanh(h),
    "relu": lambda h, p: torch.relu(h),
    "leaky_relu": lambda h, p: torch.nn.functional.leaky_relu(h, p),
    "elu": lambda h, p: torch.nn.functional.elu(h, p),
    "gelu": lambda h, p: torch.nn.functional.gelu(h),
    "gelu_tanh": lambda h, p: torch.nn.functional.gelu(h, approximate="tanh"),
    "softmax": lambda h, p: torch.softmax(h, dim=1),
}


def _parameter(values):
    return torch.nn.Parameter(torch.tensor(np.array(values, np.float64)))


class TorchTwin(torch.nn.Module):
    """TorchTwin(net): `twin(x)` gives what our loss takes (the logits for cross-entropy, the
    outputs for MSE); `twin.trace(x, y)` runs forward and backward and returns every
    intermediate by name; `parameters()` are in our flat order (W, b, gamma, beta per layer)."""

    def __init__(self, net):
        super().__init__()
        self.activations = list(net.activations)
        self.act_params = [float(p) for p in net.spec.act_param]
        self.loss_name = net.loss_name
        self.linears = torch.nn.ModuleList()
        for layer in range(net.n_layers):
            linear = torch.nn.Linear(net.sizes[layer], net.sizes[layer + 1], dtype=torch.float64)
            with torch.no_grad():
                linear.weight.copy_(torch.from_numpy(np.array(net.weights[layer], np.float64)))
                linear.bias.copy_(torch.from_numpy(np.array(net.biases[layer], np.float64)))
            self.linears.append(linear)
        self.gammas = torch.nn.ParameterList(
            [_parameter(g) for g in net.gammas if g is not None])
        self.betas = torch.nn.ParameterList([_parameter(b) for b in net.betas if b is not None])
        self.normalized = [g is not None for g in net.gammas]
        self.kept = {}

    def _norm_params(self, layer):
        index = sum(self.normalized[:layer])
        return self.gammas[index], self.betas[index]

    def forward(self, x, keep=False):
        a = torch.as_tensor(np.asarray(x, np.float64))
        self.kept = {}
        for layer, (linear, act) in enumerate(zip(self.linears, self.activations)):
            k = layer + 1
            z = linear(a)
            h = z
            if self.normalized[layer]:
                gamma, beta = self._norm_params(layer)
                h = torch.nn.functional.batch_norm(z, None, None, gamma, beta, training=True,
                                                   momentum=0.0, eps=1e-5)
            last = layer == len(self.linears) - 1
            if last and self.loss_name == "cross_entropy":
                a = h  # the loss takes logits (softmax inside it)
            else:
                a = ACTIVATIONS[act](h, self.act_params[layer])
            if keep:
                z.retain_grad()
                self.kept.update({f"z{k}": z, f"h{k}": h, f"a{k}": a})
        return a

    def loss(self, x, y):
        """Our loss of (x, y): labels or one-hot rows for cross-entropy, targets for MSE."""
        return loss_of(self.loss_name, self(x, keep=True), y)

    def trace(self, x, y):
        """Forward and backward on (x, y); {name: ndarray} of every intermediate and gradient."""
        self.zero_grad(set_to_none=True)
        loss = self.loss(x, y)
        loss.backward()
        out = {"loss": float(loss.detach())}
        for name, value in self.kept.items():
            out[name] = value.detach().numpy()
        n = len(self.linears)
        out[f"a{n}"] = ACTIVATIONS[self.activations[-1]](self.kept[f"h{n}"],
                                                         self.act_params[-1]).detach().numpy()
        for layer, linear in enumerate(self.linears):
            k = layer + 1
            out[f"delta{k}"] = self.kept[f"z{k}"].grad.numpy()
            out[f"dW{k}"] = linear.weight.grad.numpy()
            out[f"db{k}"] = linear.bias.grad.numpy()
            if self.normalized[layer]:
                gamma, beta = self._norm_params(layer)
                out[f"dgamma{k}"], out[f"dbeta{k}"] = gamma.grad.numpy(), beta.grad.numpy()
        return out

    def flat_parameters(self):
        """Our flat layout: per layer W (row-major), b, then gamma and beta if normalized."""
        parts = []
        for layer, linear in enumerate(self.linears):
            parts += [linear.weight, linear.bias]
            if self.normalized[layer]:
                parts += list(self._norm_params(layer))
        return parts


def loss_of(name, out, y):
    """Our losses in torch: MSE summed over outputs and averaged over the batch
    (= mse_loss(reduction='sum') / batch); cross-entropy = cross_entropy (mean) on logits."""
    y = torch.as_tensor(np.asarray(y))
    if name == "mse":
        return torch.nn.functional.mse_loss(out, y.to(torch.float64), reduction="sum") / out.shape[0]
    labels = y.argmax(dim=1) if y.ndim == 2 else y.to(torch.int64)
    return torch.nn.functional.cross_entropy(out, labels)


def torch_twin(net):
    return TorchTwin(net)


def torch_trace(net, x, y):
    """Every intermediate of net's forward and backward pass on (x, y), computed by torch."""
    return TorchTwin(net).trace(x, y)


def torch_linears(twin):
    return list(twin.linears)


def torch_flat_params(twin):
    return np.concatenate([p.detach().numpy().ravel() for p in twin.flat_parameters()])


def torch_flat_grads(twin):
    return np.concatenate([p.grad.numpy().ravel() for p in twin.flat_parameters()])


def torch_forward_backward(twin, loss_name, x, y):
    """Zeroes grads, runs forward and backward on (x, y); returns the loss as a float."""
    twin.zero_grad(set_to_none=False)
    loss = loss_of(loss_name, twin(x), y)
    loss.backward()
    return float(loss.detach())


# ------------------------------------------------------------------ over the flat vector

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
            a = ACTIVATIONS[act](h, float(spec.act_param[layer]))
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
