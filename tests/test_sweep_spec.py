"""Sweep files: expansion (grid, zip, seeds), --set overrides, run-id stability, one-line errors naming the key."""

from __future__ import annotations

import hashlib

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
@given(st.dictionaries(st.sampled_from(["a", "b", "c"]), st.lists(st.integers(0, 5), min_size=1, max_size=3),
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
