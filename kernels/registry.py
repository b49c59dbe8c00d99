"""The one shape of every registry (activations, losses, inits, optimizers, schedules, clipping):
a dict name -> a frozen `Entry` record with the runtime code the kernels take (None where
there is none), a one-line formula and the registry's own flags (fields of its subclass).

    RELU_LIKE = names_where(ACTIVATIONS, family="relu-like")
"""
from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class Entry:
    """name, runtime code (None when the choice never reaches a kernel) and formula."""
    name: str
    formula: str
    code: int = None


def build_registry(entries):
    """{entry.name: entry} for a list of Entry records; names and codes must be unique."""
    registry = {}
    codes = set()
    for entry in entries:
        if entry.name in registry:
            raise ValueError(f"registry: duplicate name {entry.name!r}")
        variant = getattr(entry, "variant_of", None)  # a variant shares its base's code
        if entry.code is not None and entry.code in codes and not variant:
            raise ValueError(f"registry: duplicate code {entry.code} ({entry.name!r})")
        codes.add(entry.code)
        registry[entry.name] = entry
    return registry


def names_where(registry, **flags):
    """The names (in registry order) whose entries have every flag equal to the given value."""
    return tuple(name for name, entry in registry.items()
                 if all(getattr(entry, key) == value for key, value in flags.items()))


def code_to_name(registry):
    """{code: name} of a registry's entries with a code (the first name of a shared code)."""
    out = {}
    for name, entry in registry.items():
        if entry.code is not None:
            out.setdefault(entry.code, name)
    return out
