"""The gradlab command: one module per subcommand (study, plot, train, bench)."""


def main(argv=None):
    """`gradlab` (studies.cli.main.main), imported on call so that `python -m studies.cli.main`
    runs that module once."""
    from studies.cli.main import main as run
    return run(argv)


__all__ = ["main"]
