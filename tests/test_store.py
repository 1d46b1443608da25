"""Run directories: atomic layout, stale temporary dirs, load() of a whole sweep, the manifest filter."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from helpers import loss_output
from zeroloss.papers.base import RunOutput
from zeroloss.store import SUCCESS, RunStore, flatten, load, load_runs, run_id


def test_write_creates_complete_run_dir_and_load_is_tidy(tmp_path):
    store = RunStore(tmp_path)
    spec = {"net": {"width": 8, "kind": "fc"}, "seed": 3, "lr": 0.5, "probes": ["loss", "movement"]}
    rid = store.write("demo.exp", spec, loss_output([1.0, 0.5, 0.25], final_loss=0.25, lr=0.5),
                      {"device": "cpu", "dtype": "float64"})
    run = tmp_path / "runs" / rid
    assert rid == run_id("demo.exp", spec)
    assert sorted(p.name for p in run.iterdir()) == ["_SUCCESS", "env.json", "metrics.parquet", "spec.json",
                                                     "summary.json"]
    assert json.loads((run / "spec.json").read_text()) == {"experiment": "demo.exp", "spec": spec}
    assert json.loads((run / "summary.json").read_text())["diverged"] is False
    assert not [p for p in (tmp_path / "runs").iterdir() if p.name.startswith(".")]

    df = load(tmp_path)
    assert len(df) == 3
    assert list(df.columns[:5]) == ["run_id", "experiment", "step", "metric", "value"]
    assert df["net.width"].eq(8).all() and df["net.kind"].eq("fc").all() and df["seed"].eq(3).all()
    assert df["probes"].iloc[0] == ("loss", "movement")
    # the summary key equal to a spec key is kept under a prefix, the others unprefixed
    assert df["summary.lr"].eq(0.5).all() and df["final_loss"].eq(0.25).all()
    np.testing.assert_array_equal(df["value"], [1.0, 0.5, 0.25])


def test_divergence_is_inferred_when_the_experiment_does_not_say(tmp_path):
    store = RunStore(tmp_path)
    store.write("demo.exp", {"seed": 0}, loss_output([1.0, np.inf]))
    store.write("demo.exp", {"seed": 1}, loss_output([1.0, 0.1], diverged=False))
    runs = load_runs(tmp_path).set_index("seed")
    assert bool(runs.loc[0, "diverged"]) is True and bool(runs.loc[1, "diverged"]) is False


def test_stale_temporary_and_incomplete_dirs_are_removed_and_ignored(tmp_path):
    store = RunStore(tmp_path)
    done = store.write("demo.exp", {"seed": 0}, loss_output([1.0]))
    stale = tmp_path / "runs" / ".0123456789ab.1a2b3c4d.tmp"  # a run being built when its sweep was killed
    stale.mkdir()
    (stale / "spec.json").write_text("{}")
    legacy = tmp_path / "runs" / ".tmp-0123456789ab-k_3xq9za"  # the same, named by an earlier zeroloss version
    legacy.mkdir()
    half = tmp_path / "runs" / "0123456789ab"  # a run dir without _SUCCESS (e.g. copied by hand, interrupted)
    half.mkdir()
    mine = [tmp_path / "runs" / "notes", tmp_path / "runs" / ".tmp-notes", tmp_path / "notes.txt"]  # not zeroloss's
    mine[0].mkdir()
    mine[1].write_text("keep")
    mine[2].write_text("keep")
    assert store.done_ids() == {done}
    assert load(tmp_path)["run_id"].unique().tolist() == [done]
    removed = store.clean_stale()
    assert set(removed) == {stale, legacy, half}
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == sorted([done, "notes", ".tmp-notes"])
    assert all(p.exists() for p in mine), "only zeroloss's own names are removed"


def test_writing_a_finished_run_again_is_a_no_op(tmp_path):
    store = RunStore(tmp_path)
    rid = store.write("demo.exp", {"seed": 0}, loss_output([1.0]))
    before = (tmp_path / "runs" / rid / SUCCESS).stat().st_mtime_ns
    assert store.write("demo.exp", {"seed": 0}, loss_output([2.0])) == rid
    assert (tmp_path / "runs" / rid / SUCCESS).stat().st_mtime_ns == before
    assert load(tmp_path)["value"].tolist() == [1.0]


def test_manifest_restricts_load_to_the_latest_sweep(tmp_path):
    store = RunStore(tmp_path)
    a = store.write("demo.exp", {"seed": 0}, loss_output([1.0]))
    b = store.write("demo.exp", {"seed": 1}, loss_output([2.0]))
    store.write_manifest("demo.exp", [b])
    assert load(tmp_path)["run_id"].tolist() == [b]
    assert sorted(load(tmp_path, all_runs=True)["run_id"]) == sorted([a, b])


def test_load_of_a_parent_directory_concatenates_its_sweeps(tmp_path):
    RunStore(tmp_path / "e1").write("e1", {"seed": 0}, loss_output([1.0, 2.0]))
    RunStore(tmp_path / "e2").write("e2", {"seed": 0}, loss_output([3.0]))
    df = load(tmp_path)
    assert df.groupby("experiment").size().to_dict() == {"e1": 2, "e2": 1}


def test_metrics_must_be_tidy(tmp_path):
    from zeroloss.errors import ZerolossInputError

    bad = RunOutput(pd.DataFrame({"step": [0], "loss": [1.0]}), {})
    with pytest.raises(ZerolossInputError, match="needs columns step, metric, value"):
        RunStore(tmp_path).write("demo.exp", {"seed": 0}, bad)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_flatten_dotted_names():
    assert flatten({"a": {"b": {"c": 1}}, "d": [1, [2, 3]]}) == {"a.b.c": 1, "d": (1, (2, 3))}
