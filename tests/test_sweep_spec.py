"""Sweep files: expansion (grid, zip, seeds), --set overrides, run-id stability, one-line errors naming the key."""

from __future__ import annotations

import hashlib
import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zeroloss.errors import ZerolossInputError
from zeroloss.store import canonical_json, run_id
from zeroloss.sweep.spec import apply_overrides, parse_sweep, parse_sweep_text


def test_grid_is_cartesian_in_file_order_and_seeds_innermost():
    sweep = parse_sweep_text("experiment: e\nbase: {lr: 0.1}\ngrid: {width: [8, 16], depth: [1, 2, 3]}\nseeds: 2")
    runs = sweep.expand()
    assert len(runs) == sweep.count() == 2 * 3 * 2
    assert [(r["width"], r["depth"], r["seed"]) for r in runs[:4]] == [(8, 1, 0), (8, 1, 1), (8, 2, 0), (8, 2, 1)]
    assert all(r["lr"] == 0.1 for r in runs)
    assert {(r["width"], r["depth"], r["seed"]) for r in runs} == {
        (w, d, s) for w in (8, 16) for d in (1, 2, 3) for s in (0, 1)}


def test_zip_axes_move_together_and_combine_with_grid():
    sweep = parse_sweep_text("run: e\nzip: {n: [4, 8, 16], d: [2, 3, 5]}\ngrid: {width: [1, 2]}")
    runs = sweep.expand()
    assert len(runs) == sweep.count() == 6
    assert {(r["n"], r["d"]) for r in runs} == {(4, 2), (8, 3), (16, 5)}
    assert sweep.name == "e" and "seed" not in runs[0]


def test_seed_list_and_dotted_keys_set_nested_values():
    sweep = parse_sweep_text("experiment: e\nbase: {net.width: 8, net.kind: fc}\nseeds: [3, 7]")
    runs = sweep.expand()
    assert runs == [{"net": {"width": 8, "kind": "fc"}, "seed": 3}, {"net": {"width": 8, "kind": "fc"}, "seed": 7}]


def test_overrides_are_dotted_and_read_as_yaml():
    doc = {"experiment": "e", "base": {"steps": 100}, "grid": {"width": [8]}}
    out = apply_overrides(doc, ["base.steps=50", "grid.width=[8, 16]", "seeds=3", "base.lr=1e-3",
                                "base.name=abc", "base.flag=true"])
    assert out["base"] == {"steps": 50, "lr": 0.001, "name": "abc", "flag": True}
    assert out["grid"]["width"] == [8, 16] and out["seeds"] == 3
    assert doc["base"] == {"steps": 100}, "overrides must not mutate the loaded document"
    assert parse_sweep(doc, ["grid.width=[1,2,3]"]).count() == 3


def test_exponent_floats_without_dot_are_floats():
    sweep = parse_sweep_text("experiment: e\nbase: {lr: 1e-3, eps: 5E+2, name: 1e3x}")
    assert sweep.base == {"lr": 0.001, "eps": 500.0, "name": "1e3x"}


def test_run_id_is_stable_and_order_independent():
    a = run_id("du2019.convergence", {"width": 64, "seed": 0, "lr": 0.1})
    b = run_id("du2019.convergence", {"lr": 0.1, "seed": 0, "width": 64})
    assert a == b and len(a) == 12
    # The documented definition, spelled out independently: sha256 of the canonical JSON (sorted keys, no
    # spaces) of {"experiment", "spec"}. A change of it would orphan every stored run, so it must show up here.
    text = b'{"experiment":"du2019.convergence","spec":{"lr":0.1,"seed":0,"width":64}}'
    assert a == hashlib.sha256(text).hexdigest()[:12]
    assert run_id("other", {"width": 64, "seed": 0, "lr": 0.1}) != a, "the experiment name is part of the id"


@settings(max_examples=40, deadline=None)
@given(st.dictionaries(st.sampled_from(["a", "b", "c"]),
                       st.lists(st.integers(0, 5), min_size=1, max_size=3, unique=True),  # repeats are refused
                       max_size=3),
       st.integers(1, 3))
def test_count_matches_expansion_and_ids_are_distinct_for_distinct_runs(grid, seeds):
    sweep = parse_sweep({"experiment": "e", "grid": grid, "seeds": seeds})
    runs = sweep.expand()
    assert len(runs) == sweep.count()
    distinct = {canonical_json(r) for r in runs}
    assert len({run_id("e", r) for r in runs}) == len(distinct)


@pytest.mark.parametrize("text, key", [
    ("experiment: e\ngrdi: {a: [1]}", "grdi"),
    ("experiment: e\ngrid: {width: 5}", "grid.width"),
    ("experiment: e\ngrid: {width: []}", "grid.width"),
    ("experiment: e\nzip: {n: [1, 2], d: [1]}", "zip.d"),
    ("experiment: e\ngrid: {width: [16, 16]}", "grid.width"),
    ("experiment: e\nbase: {" + ".".join(["k"] * 40) + ": 1}", "base"),
    ("experiment: e\nseeds: 0", "seeds"),
    ("experiment: e\nseeds: [1, 1]", "seeds"),
    ("experiment: e\nseeds: true", "seeds"),
    ("base: {a: 1}", "experiment"),
    ("experiment: e\nrun: f", "experiment"),
    ("experiment: e\nbase: {width: 1}\ngrid: {width: [1, 2]}", "grid.width"),
    ("experiment: e\nbase: {seed: 1}\nseeds: 2", "seeds.seed"),
    ("experiment: e\nbase: [1, 2]", "base"),
    ("- 1\n- 2", "sweep"),
    ("experiment: e\nbase: {a: [1, 2}", "sweep"),
])
def test_bad_specs_give_one_line_naming_the_key(text, key):
    with pytest.raises(ZerolossInputError) as info:
        parse_sweep_text(text)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{key}:"), message


def test_bad_override_names_the_key():
    with pytest.raises(ZerolossInputError, match=r"^--set: must be KEY=VALUE"):
        parse_sweep({"experiment": "e"}, ["nokey"])
    with pytest.raises(ZerolossInputError, match=r"^--set: base is a value"):
        parse_sweep({"experiment": "e", "base": 3}, ["base.a=1"])


# ------------------------------------------------------------------------ sizes, YAML hazards, overlaps (issue 15)

def _bomb(levels: int = 9, fanout: int = 9) -> str:
    """The billion-laughs pattern: each anchor repeats the previous one ``fanout`` times (fanout**levels leaves)."""
    lines = ["experiment: e", "base:", f"  l0: &l0 [{', '.join(['x'] * fanout)}]"]
    for k in range(1, levels):
        lines.append(f"  l{k}: &l{k} [{', '.join([f'*l{k - 1}'] * fanout)}]")
    return "\n".join(lines) + "\n"


def test_an_alias_bomb_is_refused_before_anything_is_built():
    text = _bomb()
    assert len(text.encode()) < 800  # a few hundred bytes standing for 9**9 ≈ 3.9e8 strings
    start = time.perf_counter()
    with pytest.raises(ZerolossInputError, match=r"^sweep: too large: the document expands"):
        parse_sweep_text(text)
    assert time.perf_counter() - start < 5, "sized on the node graph, not by expanding it"
    assert parse_sweep_text(_bomb(levels=3, fanout=3)).count() == 1, "small aliased documents are fine"
    with pytest.raises(ZerolossInputError, match=r"recursive alias"):
        parse_sweep_text("experiment: e\nbase: {a: &a [*a]}")


@pytest.mark.parametrize("text, key", [
    ("experiment: e\nseeds: 1000000000", "seeds"),
    ("experiment: e\ngrid: {a: [" + ", ".join(map(str, range(1000))) + "], b: [" + ", ".join(map(str, range(1001)))
     + "], c: [" + ", ".join(map(str, range(999))) + "]}", "grid.b"),
])
def test_a_billion_runs_are_refused_before_expansion(text, key):
    sweep = parse_sweep_text(text)
    assert sweep.count() >= 999_000_000
    with pytest.raises(ZerolossInputError, match=rf"^{key}: expanding [0-9,]+ runs needs about"):
        sweep.expand()


def test_the_stated_expansion_memory_bounds_the_measured_one():
    import tracemalloc

    from zeroloss.store import canonical_json
    from zeroloss.sweep.runner import unique_runs

    sweep = parse_sweep_text("experiment: e\nbase: {lr: 0.1, net: fc, probes: [loss, movement], n: 10}\n"
                             "grid: {width: [8, 16, 32, 64, 128, 256, 512, 1024]}\nseeds: 250")
    tracemalloc.start()
    try:
        runs = sweep.expand()
        ids = unique_runs("e", runs)
        manifest = canonical_json({"run_ids": [r for r, _ in ids], "specs": [s for _, s in ids]})
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(runs) == 2000 and manifest
    assert peak <= sweep.memory_bytes() <= 4 * peak, (peak, sweep.memory_bytes())


def test_duplicate_keys_are_refused_at_any_level():
    for text in ("experiment: e\nexperiment: f", "experiment: e\nbase: {lr: 0.1, lr: 0.2}",
                 "experiment: e\ngrid:\n  width: [1]\n  width: [2]"):
        with pytest.raises(ZerolossInputError, match=r"duplicate key"):
            parse_sweep_text(text)
    merged = parse_sweep_text("experiment: e\nbase: {<<: {lr: 0.1, n: 2}, lr: 0.2}")  # a merge key may be overridden
    assert merged.base == {"lr": 0.2, "n": 2}


@pytest.mark.parametrize("text, key", [
    ("experiment: e\nbase: {net: {width: 8}}\ngrid: {net.width: [1, 2]}", "grid.net.width"),
    ("experiment: e\nbase: {net.depth: 2}\ngrid: {net: [{width: 1}]}", "grid.net"),
    ("experiment: e\nbase: {net.width: 8, net: {width: 9}}", "base.net"),
    ("experiment: e\nzip: {net.width: [1]}\ngrid: {net: [{a: 1}]}", "zip.net.width"),
])
def test_a_dotted_key_overlapping_a_nested_one_is_refused(text, key):
    with pytest.raises(ZerolossInputError, match=rf"^{re.escape(key)}: already set in"):
        parse_sweep_text(text)


def test_dotted_and_nested_keys_that_do_not_overlap_merge():
    sweep = parse_sweep_text("experiment: e\nbase: {net.width: 8, net: {depth: 2}}\ngrid: {net.kind: [fc]}")
    assert sweep.expand() == [{"net": {"width": 8, "depth": 2, "kind": "fc"}}]


@pytest.mark.parametrize("text, key", [
    ("experiment: e\nbase: {t: 2001-12-14}", "base.t"),
    ("experiment: e\nbase: {t: 2001-12-14 21:59:43.10}", "base.t"),
    ("experiment: e\ngrid: {s: [!!binary aGVsbG8=]}", "grid.s"),
    ("experiment: e\nbase: {s: !!set {a}}", "base.s"),
    ("experiment: e\nbase: {1: a}", "base"),
])
def test_values_that_are_not_json_are_refused_naming_the_key(text, key):
    with pytest.raises(ZerolossInputError, match=rf"^{re.escape(key)}: "):
        parse_sweep_text(text)
    assert parse_sweep_text("experiment: e\nbase: {t: '2001-12-14'}").base == {"t": "2001-12-14"}, "quoted: text"


def test_sweep_files_that_are_not_utf8_or_too_large_are_refused(tmp_path):
    from zeroloss.sweep.spec import MAX_FILE_BYTES, load_sweep_file

    latin = tmp_path / "latin1.yaml"
    latin.write_bytes("experiment: e\ndescription: caf\u00e9\n".encode("latin-1"))
    with pytest.raises(ZerolossInputError, match=r"^FILE: not UTF-8 text \(byte 0xe9 at offset 30\)"):
        load_sweep_file(latin)
    big = tmp_path / "big.yaml"
    big.write_bytes(b"experiment: e\n" + b"#" * MAX_FILE_BYTES)
    with pytest.raises(ZerolossInputError, match=r"^FILE: a sweep file is at most"):
        load_sweep_file(big)


# ------------------------------------------------------------------------------ run values (sweep.checks)

def test_run_values_are_checked_per_key_with_the_run_named():
    from zeroloss.papers.registry import get_experiment
    from zeroloss.sweep.checks import validate_runs

    kernel = get_experiment("du2019.kernel")  # its wing declares the checks of its keys
    good = {"net": "fc", "width": 16, "depth": 2, "n": 6, "d": 4, "lr_scale": 1.0, "seed": 0}
    validate_runs(kernel, [good])
    for key, value, message in [("lr_scale", float("nan"), "lr_scale: must be a finite number"),
                                ("lr_scale", 0.0, "lr_scale: must be a number in (0, 2)"),
                                ("width", 0, "width: must be a positive integer"),
                                ("width", True, "width: must be a positive integer"),
                                ("seed", -1, "seed: must be an integer from 0 to 2**63 - 1"),
                                ("net", "conv-resnet", "net: must be one of fc, resnet"),
                                ("d", 1, "d: must be at least 2"),
                                ("probes", ["loss", "nope"], "probes: item 1: must be one of")]:
        with pytest.raises(ZerolossInputError, match=rf"^{re.escape(message)}.*\(run 2 of 2\)$"):
            validate_runs(kernel, [good, {**good, key: value}])


def test_an_experiment_without_declared_checks_still_gets_the_universal_rule():
    from zeroloss.sweep.checks import validate_runs

    validate_runs("nobody.declared", [{"anything": [1, "a", None, {"b": True}]}])
    with pytest.raises(ZerolossInputError, match=r"^x.y: must be a finite number, got inf \(run 1 of 1\)$"):
        validate_runs("nobody.declared", [{"x": {"y": float("inf")}}])


def test_every_registered_run_passes_its_experiments_checks():
    from zeroloss.papers.registry import load_experiments
    from zeroloss.sweep.checks import CHECKS, validate_runs

    experiments = load_experiments()
    for name, experiment in experiments.items():
        if name.split(".")[0] in ("du2019", "chatterjee2022", "marion2023"):
            assert name in CHECKS, f"{name}: no checks declared"
        for specs in experiment.specs.values():
            validate_runs(experiment, specs)
