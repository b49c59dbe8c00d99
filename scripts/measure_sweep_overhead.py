"""A study's serial sweep against training the same networks through MLP.fit, in one process.

    python scripts/measure_sweep_overhead.py [STUDY] [--scale quick] [--process]

Both sides build every configuration of the study's grid with the runner's own helpers
(studies.run.execute.dataset_for / build_run / training_data: the same architecture, init,
optimizer, clipping, batch size and data) and train it for the configuration's steps (MLP.fit:
whole epochs of floor(N/B) batches, epochs = steps / (N // B) rounded up). Side A is
studies.run.execute.execute_group per group (evaluation, layer statistics, records, labels and
payload: what a `gradlab run --workers 0` worker does, the store aside); side B is MLP.fit with
its per-epoch evaluation switched off. Prints both wall and CPU times (compilation warmed
before either is timed) and their ratios. MLP.fit trains whole epochs, so it may take more
steps than the sweep: the ratios are also given against its time per step times the sweep's
steps.

--process also times the whole `gradlab run STUDY --scale S --workers 0` process into an empty
store (imports, dataset, planning, store writes; warm compilation cache) as a subprocess, its
CPU time from the children's resource usage, against the same MLP.fit times.
"""
import argparse
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from threadpoolctl import threadpool_limits  # noqa: E402

from studies.run.execute import build_run, dataset_for, execute_group, training_data  # noqa
from studies.run.group import plan_groups  # noqa: E402
from studies.spec import load_spec  # noqa: E402


def fit_all(configs):
    """(wall seconds, CPU seconds) to train every configuration through MLP.fit; steps."""
    seconds, cpu, steps = 0.0, 0.0, 0
    for config in configs:
        data = dataset_for(config)
        net, opt, clip = build_run(config, data)
        x, y, _, batch = training_data(net, data, config)
        per_epoch = len(x) // batch
        epochs = max(1, math.ceil(config["steps"] / per_epoch))
        started, cpu_started = time.perf_counter(), time.process_time()
        net.fit(x, y, opt, epochs=epochs, batch_size=batch, seed=config["seed"], clip=clip,
                drop_last=True, evaluate=False)
        seconds += time.perf_counter() - started
        cpu += time.process_time() - cpu_started
        steps += epochs * per_epoch
    return seconds, cpu, steps


def sweep_all(configs, labels):
    """(wall, CPU) seconds of execute_group over the runner's serial groups."""
    tasks = [SimpleNamespace(config=c, labels=labels) for c in configs]
    started, cpu_started = time.perf_counter(), time.process_time()
    for group in plan_groups(tasks, 1):
        execute_group([t.config for t in group], labels)
    return time.perf_counter() - started, time.process_time() - cpu_started


def whole_process(study, scale):
    """(wall, CPU) seconds of a serial `gradlab run` of the study into an empty store."""
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=str(root))
    with tempfile.TemporaryDirectory() as out:
        command = [sys.executable, "-m", "studies.cli", "run", study, "--scale", scale,
                   "--workers", "0", "--quiet", "--out", str(Path(out) / study)]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        subprocess.run(command, cwd=root, env=env, check=True, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("study", nargs="?", default="vanishing")
    parser.add_argument("--scale", default="quick")
    parser.add_argument("--process", action="store_true",
                        help="also time the whole serial `gradlab run` process")
    args = parser.parse_args(argv)
    spec = load_spec(args.study)
    configs = spec.grid(args.scale)
    with threadpool_limits(limits=1):
        fit_all(configs[:1])        # compile / load both paths before timing
        sweep_all(configs[:1], spec.labels)
        fit_wall, fit_cpu, fit_steps = fit_all(configs)
        sweep_wall, sweep_cpu = sweep_all(configs, spec.labels)
    steps = sum(c["steps"] for c in configs)
    per_step = steps / fit_steps  # MLP.fit's time scaled to the sweep's steps
    print(f"{args.study} ({args.scale}): {len(configs)} runs; wall s, CPU s (CPU time is what "
          "a loaded machine does not inflate)")
    print(f"  MLP.fit        {fit_wall:7.2f} {fit_cpu:7.2f}  ({fit_steps} steps; "
          f"{fit_wall * per_step:.2f} {fit_cpu * per_step:.2f} for {steps})")
    rows = [("execute_group", sweep_wall, sweep_cpu)]
    if args.process:
        rows.append(("whole process", *whole_process(args.study, args.scale)))
    for name, wall, cpu in rows:
        print(f"  {name:14s} {wall:7.2f} {cpu:7.2f}  ratio {wall / fit_wall:5.2f}x "
              f"{cpu / fit_cpu:5.2f}x; per step {wall / (fit_wall * per_step):5.2f}x "
              f"{cpu / (fit_cpu * per_step):5.2f}x")


if __name__ == "__main__":
    main()
