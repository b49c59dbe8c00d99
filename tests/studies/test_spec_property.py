"""Property: a valid spec mutated at random (keys retyped or revalued, tables nested, keys
dropped, unknown keys added) either loads and plans at every scale, or is rejected with a user
error of one line (the CLI's exit 2); a few are written as TOML and run for real with
`gradlab run --scale smoke`. Deterministic (derandomize)."""
import copy
import datetime
import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

from hypothesis import HealthCheck, given, settings, strategies as st

from studies.config import FIELDS
from studies.run.runner import plan
from studies.spec import SCALES, TOP_KEYS, parse_spec

ROOT = Path(__file__).resolve().parents[2]
BASE = {"name": "prop", "description": "a mutated spec", "section": "8", "seeds": [0],
        "figures": ["vanishing_ratio"],
        "fixed": {"dataset": "blobs", "n_samples": 60, "steps": 4, "metrics_every": 2,
                  "width": 8, "depth": 1},
        "axes": {"activation": ["tanh", "relu"]},
        "labels": {"dead_fraction": 0.5},
        "scales": {"smoke": {"seeds": [0], "fixed": {"steps": 2}}}}
TABLES = ("fixed", "axes", "labels", "scales", "scales.smoke", "scales.smoke.fixed",
          "scales.quick")
WORDS = ("tanh", "relu", "sigmoid", "adam", "sgd", "momentum", "blobs", "digits", "spirals",
         "float32", "float64", "none", "global_norm", "he_normal", "xavier_normal", "cuda",
         "cpu", "smoke", "full", "", "x y", "../nope.npz")
OUTCOMES = Counter()


def values(small=False):
    """TOML values: scalars (realistic words among them), lists and tables of them; small:
    small numbers, words and booleans only."""
    if small:
        return st.one_of(st.booleans(), st.integers(-2, 12), st.floats(-2.0, 12.0),
                         st.sampled_from(WORDS))
    ints = st.one_of(st.integers(-3, 40), st.integers())
    floats = st.floats(allow_nan=True, allow_infinity=True)
    text = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=6)
    scalar = st.one_of(st.booleans(), ints, floats, st.sampled_from(WORDS), text,
                       st.dates(datetime.date(2000, 1, 1), datetime.date(2030, 1, 1)))
    keys = st.one_of(st.sampled_from(sorted(FIELDS)), text)
    return st.recursive(scalar, lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(keys, inner, max_size=3)), max_leaves=5)


def key_names():
    return st.one_of(st.sampled_from(TOP_KEYS + tuple(FIELDS) + ("seed", "smoke", "quick",
                                                                   "vanishing_ratio")),
                     st.text(st.characters(min_codepoint=97, max_codepoint=122), max_size=6))


def _table(raw, path):
    node = raw
    for part in path.split(".") if path else []:
        if not isinstance(node, dict):
            return None
        node = node.setdefault(part, {})
    return node if isinstance(node, dict) else None


@st.composite
def mutated(draw, small=False):
    """BASE with 1 to 3 mutations; small: one mutation of a configuration key (more of these
    specs run), with small numbers."""
    raw = copy.deepcopy(BASE)
    for _ in range(draw(st.integers(1, 1 if small else 3))):
        where = draw(st.sampled_from(("fixed", "axes", "scales.smoke.fixed") if small else
                                     ("",) + TABLES))
        table = _table(raw, where)
        if table is None:
            continue
        kind = draw(st.sampled_from(("set", "set", "axis", "drop", "nest")))
        key = draw(st.one_of(st.sampled_from(sorted(table) or ["name"]),
                             st.sampled_from(sorted(FIELDS)) if small else key_names()))
        if kind == "set":
            table[key] = draw(values(small))
        elif kind == "axis":
            table[key] = draw(st.lists(values(small), min_size=1, max_size=3))
        elif kind == "drop":
            table.pop(key, None)
        elif key in table:
            table[key] = {draw(key_names()): table[key]}
    return raw


@settings(max_examples=100, derandomize=True, deadline=None,
          suppress_health_check=list(HealthCheck))
@given(raw=mutated())
def test_mutated_specs_load_and_plan_or_fail_in_one_line(raw):
    try:
        spec = parse_spec(raw, "prop.toml")
        for scale in SCALES:
            plan(spec, scale)
    except (ValueError, OSError) as err:  # what the CLI reports in one line, exit 2
        message = str(err)
        assert message.startswith("prop.toml") and "\n" not in message, message
        OUTCOMES["rejected"] += 1
    else:
        OUTCOMES["accepted"] += 1


def test_the_property_tried_enough_examples():
    print(f"mutated specs tried: {dict(OUTCOMES)}")
    assert sum(OUTCOMES.values()) >= 90 and OUTCOMES["rejected"] and OUTCOMES["accepted"]


def toml(value):
    """A TOML value (inline tables for tables)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return {"nan": "nan", "inf": "inf", "-inf": "-inf"}.get(repr(value), repr(value))
    if isinstance(value, (int, datetime.date)):
        return str(value) if isinstance(value, int) else value.isoformat()
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml(v) for v in value) + "]"
    return "{" + ", ".join(f"{_key(k)} = {toml(v)}" for k, v in value.items()) + "}"


def _key(name):
    return name if re.fullmatch(r"[A-Za-z0-9_-]+", name) else json.dumps(name)


RUNS = Counter()


@settings(max_examples=8, derandomize=True, deadline=None,
          suppress_health_check=list(HealthCheck))
@given(raw=mutated(small=True))
def test_mutated_specs_run_for_real_or_fail_in_one_line(raw, tmp_path_factory):
    folder = tmp_path_factory.mktemp("prop")
    path = folder / "prop.toml"
    path.write_text("\n".join(f"{_key(k)} = {toml(v)}" for k, v in raw.items()) + "\n")
    result = subprocess.run([sys.executable, "-m", "studies.cli", "run", str(path), "--scale",
                             "smoke", "--workers", "0", "--quiet", "--out",
                             str(folder / "out")], cwd=ROOT, capture_output=True, text=True,
                            timeout=600, env={**os.environ, "PYTHONPATH": str(ROOT)})
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    RUNS[result.returncode] += 1
    if result.returncode == 0:
        assert not lines, result.stderr
    else:
        assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
        assert result.returncode == 2 or "runs failed" in lines[0], result.stderr
    print(f"real runs by exit code so far: {dict(RUNS)}; {lines[:1]}")
