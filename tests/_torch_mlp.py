"""The same MLP in PyTorch, built from our weights, with every intermediate kept by name."""
import numpy as np
import torch

TORCH_ACTIVATIONS = {
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


def torch_trace(net, x, y_kernel):
    """Forward/backward in float64 torch with our parameters; returns {name: ndarray}."""
    t = lambda v: torch.tensor(np.asarray(v, np.float64), requires_grad=True)
    weights = [t(w) for w in net.weights]
    biases = [t(b) for b in net.biases]
    gammas = [None if g is None else t(g) for g in net.gammas]
    betas = [None if b is None else t(b) for b in net.betas]
    a = torch.tensor(np.asarray(x, np.float64))
    kept = {}
    for layer, act in enumerate(net.activations):
        k = layer + 1
        z = a @ weights[layer].T + biases[layer]
        z.retain_grad()
        kept[f"z{k}"] = z
        h = z
        if gammas[layer] is not None:
            h = torch.nn.functional.batch_norm(z, None, None, gammas[layer], betas[layer],
                                               training=True, momentum=0.0, eps=1e-5)
        kept[f"h{k}"] = h
        a = TORCH_ACTIVATIONS[act](h, float(net.spec.act_param[layer]))
        kept[f"a{k}"] = a
    y = torch.tensor(np.asarray(y_kernel, np.float64))
    logits = kept[f"h{net.n_layers}"]
    if net.loss_name == "cross_entropy":
        loss = torch.nn.functional.cross_entropy(logits, y.argmax(dim=1))
    else:
        loss = ((a - y) ** 2).sum() / len(y)
    loss.backward()
    out = {"loss": float(loss.detach())}
    for name, v in kept.items():
        out[name] = v.detach().numpy()
    for layer in range(net.n_layers):
        k = layer + 1
        out[f"delta{k}"] = kept[f"z{k}"].grad.numpy()
        out[f"dW{k}"] = weights[layer].grad.numpy()
        out[f"db{k}"] = biases[layer].grad.numpy()
        if gammas[layer] is not None:
            out[f"dgamma{k}"] = gammas[layer].grad.numpy()
            out[f"dbeta{k}"] = betas[layer].grad.numpy()
    return out
