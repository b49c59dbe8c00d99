"""`gradlab bench`: validate every kernel against its NumPy reference, then time it against NumPy,
PyTorch eager and JAX jit over a matrix of shapes in float32 and float64; prints the ratio table
and the performance targets, writes CSV/Parquet/figures under --out (studies.bench.runner); then
the curvature rows: one Hessian-vector product and the per-example gradient norms against
PyTorch, and their cost in gradients (studies.bench.curvature: curvature.csv, curvature.md)."""
import os


def add_parser(sub):
    p = sub.add_parser("bench", help="validate and time the kernels against NumPy, PyTorch, JAX",
                       description=__doc__)
    scale = p.add_mutually_exclusive_group()
    scale.add_argument("--quick", dest="scale", action="store_const", const="quick",
                       help="fewer shapes and samples (about 2 minutes on 2 cores)")
    scale.add_argument("--full", dest="scale", action="store_const", const="full",
                       help="every shape, more samples, and the first-ever compile time")
    scale.add_argument("--smoke", dest="scale", action="store_const", const="smoke",
                       help="tiny shapes, float32, seconds: checks the pipeline and its files")
    p.add_argument("--dtype", action="append", choices=["float32", "float64"],
                   help="repeat for both (default: the scale's, float32 and float64)")
    p.add_argument("--peers", default="numpy,torch,jax",
                   help="comma-separated peers to time (default numpy,torch,jax; 'none')")
    p.add_argument("--threads", type=int, default=None,
                   help="threads for BLAS, PyTorch and multi-run training (default min(2, CPUs))")
    p.add_argument("--out", default="results/bench", help="output folder (default results/bench)")
    p.add_argument("--no-plots", action="store_true", help="skip the figures")
    p.add_argument("--no-curvature", action="store_true",
                   help="skip the Hessian-vector product and per-example norm rows "
                   "(curvature.csv, curvature_cost.csv, curvature.md)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                   help="cuda: CudaMLP / CudaMultiMLP train steps against PyTorch CUDA on the "
                   "same GPU (needs numba-cuda, a GPU and torch with CUDA)")
    p.set_defaults(handler=run, scale="quick")
    return p


def run(args):
    if args.device == "cuda":
        from kernels.cuda import require
        require()
        from studies.bench.gpu import main
        return main()
    peers = [] if args.peers.strip() == "none" else [p.strip() for p in args.peers.split(",")
                                                       if p.strip()]
    unknown = sorted(set(peers) - {"numpy", "torch", "jax"})
    if unknown:
        raise ValueError(f"--peers: unknown peer(s) {unknown}; expected numpy, torch, jax")
    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads: expected a positive integer, got {args.threads}")
    from studies.bench.runner import run_bench
    run_bench(args.scale, dtypes=args.dtype, out=os.fspath(args.out), peers=tuple(peers),
              threads=args.threads, plots=not args.no_plots)
    if not args.no_curvature:
        from studies.bench.curvature import run_curvature_bench
        run_curvature_bench(args.scale, os.fspath(args.out), dtypes=args.dtype,
                            threads=args.threads or min(2, os.cpu_count() or 1),
                            torch="torch" in peers)
    return 0
