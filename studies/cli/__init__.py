"""The gradlab command: one module per subcommand (study, plot, train, bench)."""
from studies.cli.main import main

__all__ = ["main"]
