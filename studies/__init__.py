"""gradlab studies: declarative sweeps over real data, per-layer diagnostics, a crash-safe
results store. `studies.load(path)` returns a study's runs, history and layers tables."""


def load(path):
    """Results (runs, history, layers DataFrames and the manifest) of a results folder."""
    from .store import load as load_store
    return load_store(path)
