"""The `gradlab` command: one sub-command per module. Every error is one line on stderr: a user
error (a bad argument, spec, file or store) exits 2 naming what was wrong and what was expected;
anything else exits 1 as an internal error (`--debug` prints its traceback)."""
import argparse
import sys
import traceback
import warnings

from studies.cli import bench as bench_command, plot as plot_command, study as study_commands, \
    train as train_command

COMMANDS = {"run": study_commands, "train": train_command, "plot": plot_command,
            "bench": bench_command}
USER_ERRORS = (ValueError, OSError)  # spec, dataset, store and argument errors; missing files


class UserError(ValueError):
    """An error in what the user asked for: reported in one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        print(f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)",
              file=sys.stderr)
        raise SystemExit(2)


def one_line(text):
    """The message on one line: its lines joined with '; '."""
    return "; ".join(line.strip() for line in str(text).splitlines() if line.strip())


def _show_warning(message, category, filename, lineno, file=None, line=None):
    print(f"gradlab: warning: {one_line(message)}", file=file or sys.stderr)


def build_parser():
    parser = _Parser(prog="gradlab", description="Backpropagation and gradient-based "
                     "optimization in MLPs: Numba kernels, studies of gradient pathologies.")
    parser.add_argument("--debug", action="store_true",
                        help="print the traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name, module in COMMANDS.items():
        module.add_parser(sub)
    for command in sub.choices.values():
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                             help="print the traceback of an error")
    return parser


def _message(err):
    """A user error's text; an OSError without its own words gets its file and reason."""
    if isinstance(err, OSError) and err.filename and err.strerror:
        return f"{err.filename}: {err.strerror}"
    return one_line(err) or type(err).__name__


def main(argv=None):
    args = build_parser().parse_args(argv)
    debug = getattr(args, "debug", False)
    shown, warnings.showwarning = warnings.showwarning, _show_warning
    try:
        return args.handler(args) or 0
    except KeyboardInterrupt:
        print(f"gradlab {args.command}: interrupted", file=sys.stderr)
        return 130
    except USER_ERRORS as err:  # bad names, values, specs, files, stores
        if debug:
            traceback.print_exc()
        print(f"gradlab {args.command}: error: {_message(err)}", file=sys.stderr)
        return 2
    except Exception as err:
        if debug:
            traceback.print_exc()
        print(f"gradlab {args.command}: internal error: {type(err).__name__}: {one_line(err)} "
              f"(rerun with --debug for the traceback)", file=sys.stderr)
        return 1
    finally:
        warnings.showwarning = shown


if __name__ == "__main__":
    raise SystemExit(main())
