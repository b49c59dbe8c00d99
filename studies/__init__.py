"""gradlab studies: declarative sweeps over real data, per-layer diagnostics, a crash-safe
results store. `studies.load(path)` returns a study's runs, history and layers tables."""


def load(path, thresholds=None):
    """Results (runs, history, layers DataFrames and the manifest) of a results folder; a
    damaged run is left out with one warning. thresholds: label thresholds to relabel the
    runs under, from their stored data (studies.store.load)."""
    from .store import load as load_store
    return load_store(path, thresholds=thresholds)
