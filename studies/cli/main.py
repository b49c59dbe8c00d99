"""The `gradlab` command: one sub-command per module, user errors exit 2 with one line."""
import argparse
import sys

from studies.cli import bench as bench_command, plot as plot_command, study as study_commands, \
    train as train_command

COMMANDS = {"run": study_commands, "train": train_command, "plot": plot_command,
            "bench": bench_command}


class UserError(ValueError):
    """An error in what the user asked for: reported in one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        self.print_usage(sys.stderr)
        print(f"gradlab: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def build_parser():
    parser = _Parser(prog="gradlab", description="Backpropagation and gradient-based "
                     "optimization in MLPs: Numba kernels, studies of gradient pathologies.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name, module in COMMANDS.items():
        module.add_parser(sub)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args) or 0
    except (ValueError, FileNotFoundError) as err:  # user errors: bad names, values, files
        print(f"gradlab {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"gradlab {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
