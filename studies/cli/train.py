"""`gradlab train`: one MLP from command-line flags; prints the learning curve per epoch and the
per-layer gradient statistics of the last step."""
import time

import numpy as np


from kernels import MLP
from kernels.activations import ACTIVATIONS
from kernels.clipping import CLIPPING, make_clip
from kernels.init import INITS
from kernels.optimizers import OPTIMIZERS, make_optimizer as build_optimizer
from kernels.schedules import SCHEDULES, make_schedule

from studies.data.datasets import DATASETS, load_dataset


def add_parser(sub):
    p = sub.add_parser("train", help="train one MLP from flags and print its learning curve",
                       description=__doc__)
    p.add_argument("--dataset", default="mnist1d",
                   help=f"a name ({', '.join(DATASETS)}) or a file (.npz, .csv, MNIST IDX)")
    p.add_argument("--hidden", default="100,100",
                   help="hidden widths, comma-separated (default 100,100)")
    p.add_argument("--activation", default="relu",
                   choices=[k for k, a in ACTIVATIONS.items() if a.hidden])
    p.add_argument("--init", default=None, choices=sorted(INITS),
                   help="default: he_normal for the ReLU family, else xavier_normal")
    p.add_argument("--init-scale", type=float, default=None, help="std/bound of naive inits")
    p.add_argument("--gain", type=float, default=1.0)
    p.add_argument("--batchnorm", action="store_true")
    p.add_argument("--optimizer", default="adam", choices=sorted(OPTIMIZERS))
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--momentum", type=float, default=0.9, help="momentum / Adam beta1")
    p.add_argument("--beta2", type=float, default=0.999, help="Adam beta2")
    p.add_argument("--rho", type=float, default=0.99, help="RMSProp decay")
    p.add_argument("--eps", type=float, default=1e-8)
    p.add_argument("--eps-outside-sqrt", action="store_true",
                   help="PyTorch's lr/(sqrt(v)+eps) instead of the report's lr/sqrt(v+eps)")
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--schedule", default="constant", choices=sorted(SCHEDULES))
    p.add_argument("--warmup", type=int, default=0, help="linear warmup steps")
    p.add_argument("--clip", default="none", metavar="MODE[:C]",
                   help=f"gradient clipping, e.g. global_norm:1.0 ({', '.join(CLIPPING)})")
    p.add_argument("--batch-size", type=int, default=100, help="0 = full batch")
    p.add_argument("--epochs", type=int, default=150)
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                   help="cuda: train on the GPU (kernels.cuda; needs numba-cuda and a GPU)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--every", type=int, default=10, help="print every N epochs")
    p.set_defaults(handler=run)
    return p


def parse_clip(text):
    mode, _, value = text.partition(":")
    if mode != "none" and not value:
        raise ValueError(f"--clip: expected MODE:THRESHOLD such as global_norm:1.0, got {text!r}")
    try:
        return make_clip(mode, float(value) if value else None)
    except ValueError as err:
        raise ValueError(f"--clip: {err}") from None


def make_optimizer(args, steps_per_epoch):
    schedule_params = {"constant": {}, "step": {"step_size": max(1, steps_per_epoch * 30)},
                       "exponential": {"gamma": 0.999}, "inverse_time": {"k": 1e-3},
                       "cosine": {"t_max": steps_per_epoch * args.epochs}}[args.schedule]
    schedule = make_schedule(args.schedule, warmup=args.warmup, **schedule_params)
    flags = {"momentum": args.momentum, "beta1": args.momentum, "beta2": args.beta2,
             "rho": args.rho, "eps": args.eps, "eps_inside_sqrt": not args.eps_outside_sqrt}
    hyper = {key: flags[key] for key in OPTIMIZERS[args.optimizer].hyper if key in flags}
    return build_optimizer(args.optimizer, lr=args.lr, weight_decay=args.weight_decay,
                           schedule=schedule, **hyper)


def parse_hidden(text):
    try:
        return [int(w) for w in text.split(",") if w.strip()] if text.strip() else []
    except ValueError:
        raise ValueError(f"--hidden: expected comma-separated positive integers, got {text!r}")


def run(args):
    for flag, value in (("--every", args.every), ("--epochs", args.epochs)):
        if value < 1:
            raise ValueError(f"{flag}: expected a positive number of epochs, got {value}")
    data = load_dataset(args.dataset, seed=args.seed)
    classification = data.task == "classification"
    sizes = [data.n_features] + parse_hidden(args.hidden) + [data.n_outputs]
    if args.device == "cuda":
        from kernels.cuda import require
        require()
    net = MLP(sizes, activation=args.activation, init=args.init, gain=args.gain,
              init_scale=args.init_scale, loss="cross_entropy" if classification else "mse",
              batchnorm=args.batchnorm, dtype=args.dtype, seed=args.seed)
    batch = len(data.x_train) if args.batch_size == 0 else args.batch_size
    opt = make_optimizer(args, max(1, len(data.x_train) // max(batch, 1)))
    clip = parse_clip(args.clip)
    print(f"gradlab train: {data.name} ({len(data.x_train)} train / {len(data.x_test)} test), "
          f"{net}, {opt}, clip={clip.mode}")
    header = f"{'epoch':>6} {'step':>7} {'loss':>10} {'train':>7} {'test':>7} {'time s':>7}"
    print(header)
    start = time.perf_counter()

    def report(epoch, summary):
        if epoch % args.every == 0 or epoch == 1 or epoch == args.epochs:
            acc = (lambda k: f"{summary.get(k, float('nan')):7.4f}")
            print(f"{epoch:6d} {summary['step']:7d} {summary['loss']:10.5f} "
                  f"{acc('train_accuracy') if classification else acc('train_loss')} "
                  f"{acc('test_accuracy') if classification else acc('test_loss')} "
                  f"{time.perf_counter() - start:7.2f}", flush=True)

    if args.device == "cuda":
        from studies.run.device import fit_on_device
        history = fit_on_device(net, data.x_train, data.y_train, opt, args.epochs, batch,
                                args.seed, clip, data.x_test, data.y_test, report)
    else:
        history = net.fit(data.x_train, data.y_train, opt, epochs=args.epochs,
                          batch_size=batch, seed=args.seed, clip=clip, x_test=data.x_test,
                          y_test=data.y_test, callback=report)
    if history.diverged:
        cause = history.divergence_cause or "non-finite step"
        print(f"diverged at optimizer step {history.diverged_step + 1}: {cause}; the step was "
              f"not applied and training stopped")
    print_layer_table(history)
    if history.epochs:
        last = history.epochs[-1]
        key = "test_accuracy" if classification else "test_loss"
        print(f"final {key.replace('_', ' ')}: {last[key]:.4f}")
    return 0


def print_layer_table(history):
    """Per-layer gradient statistics of the last recorded step; a refused (diverged) step has
    no weight norm or update ratio ('-'): it was not applied."""
    steps = history.steps
    if not len(steps["loss"]):
        return
    i = len(steps["loss"]) - 1
    if not np.isfinite(steps["w_grad_norm"][i]).any():  # the cuda step records no layer norms
        print(f"per-layer gradients: not recorded by this device's step (global norm at step "
              f"{i + 1}: {steps['grad_norm'][i]:.3e})")
        return
    print(f"per-layer gradients at step {i + 1} (global norm {steps['grad_norm'][i]:.3e}):")
    print(f"{'layer':>6} {'||dW||':>11} {'||db||':>11} {'||delta||':>11} {'||W||':>9} "
          f"{'update/W':>9}")
    refused = history.diverged and i == history.diverged_step
    for layer in range(steps["w_grad_norm"].shape[1]):
        w = steps["w_norm"][i, layer]
        ratio = steps["w_update_norm"][i, layer] / w if w > 0 else float("nan")
        weights = f"{'-':>9} {'-':>9}" if refused else f"{w:9.3f} {ratio:9.2e}"
        print(f"{layer + 1:6d} {steps['w_grad_norm'][i, layer]:11.3e} "
              f"{steps['b_grad_norm'][i, layer]:11.3e} {steps['delta_norm'][i, layer]:11.3e} "
              f"{weights}")
