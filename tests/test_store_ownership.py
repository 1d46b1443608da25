"""The ownership rule (issue 15.1): zeroloss writes into, deletes or replaces only what it can prove it made.

Library-level tests of zeroloss.store.ownership / atomic; the CLI reproductions of the issue are in
tests/test_cli_output.py.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
import uuid
from pathlib import Path

import pytest

import fake_experiment
from helpers import loss_output, tree_bytes
from zeroloss.errors import ZerolossInputError
from zeroloss.report import write_report
from zeroloss.store import MARKER, RunStore, building_folder, check_folder, claim_folder, folder_kind, load
from zeroloss.store.atomic import (
    STALE_AFTER_SECONDS,
    atomic_write_bytes,
    ensure_parent,
    remove_stale_temporaries,
    temporary_name,
)
from zeroloss.store.ownership import clean_temporary_folders, legacy_kind, write_marker
from zeroloss.sweep import run_sweep


def _age(path: Path, seconds: float = 10 * STALE_AFTER_SECONDS) -> None:
    """Date ``path`` back, as if its writer had died ``seconds`` ago (young temporaries are never removed)."""
    then = time.time() - seconds
    os.utime(path, (then, then))


def _tensorboard_like(root: Path) -> Path:
    (root / "runs" / "exp1").mkdir(parents=True)
    (root / "runs" / "exp1" / "events.log").write_text("keep")
    (root / "runs" / ".tmp-exp2").mkdir()  # even names that look like an earlier zeroloss temporary
    return root


# ------------------------------------------------------------------------------------------- folders

def test_claim_creates_and_marks_a_new_or_empty_folder(tmp_path):
    claim_folder(tmp_path / "a" / "b", "sweep")
    assert folder_kind(tmp_path / "a" / "b") == "sweep"
    assert json.loads((tmp_path / "a" / "b" / MARKER).read_text())["kind"] == "sweep"
    (tmp_path / "empty").mkdir()
    claim_folder(tmp_path / "empty", "reproduce")
    assert folder_kind(tmp_path / "empty") == "reproduce"
    claim_folder(tmp_path / "a" / "b", "sweep")  # its own folder: accepted again


def test_a_foreign_or_other_kind_folder_is_refused_and_left_untouched(tmp_path):
    foreign = _tensorboard_like(tmp_path / "proj")
    before = tree_bytes(foreign)
    with pytest.raises(ZerolossInputError, match=r"^--out: .* non-empty folder that zeroloss did not create"):
        claim_folder(foreign, "sweep")
    with pytest.raises(ZerolossInputError, match="--out: .* is a file"):
        claim_folder(foreign / "runs" / "exp1" / "events.log", "sweep")
    claim_folder(tmp_path / "t", "train")
    with pytest.raises(ZerolossInputError, match="holds a `zeroloss train` output, not a sweep"):
        claim_folder(tmp_path / "t", "sweep")
    assert tree_bytes(foreign) == before


def test_clean_stale_in_a_foreign_folder_deletes_nothing(tmp_path):
    foreign = _tensorboard_like(tmp_path)
    (foreign / "runs" / "0123456789ab").mkdir()  # even a run-id-shaped folder without _SUCCESS
    before = tree_bytes(foreign)
    assert RunStore(foreign).clean_stale() == []
    assert tree_bytes(foreign) == before


@pytest.mark.usefixtures("fake_registered")
def test_sweep_into_a_tensorboard_folder_is_refused_and_deletes_nothing(tmp_path):
    foreign = _tensorboard_like(tmp_path / "proj")
    before = tree_bytes(foreign)
    with pytest.raises(ZerolossInputError, match="did not create"):
        run_sweep(fake_experiment.EXPERIMENT, fake_experiment.specs(), foreign, device="cpu", progress=False)
    assert tree_bytes(foreign) == before, "no .lock, no sweep.json, no marker, nothing removed"


@pytest.mark.usefixtures("fake_registered")
def test_report_never_overwrites_a_users_report(tmp_path):
    # a folder of the user's that holds a zeroloss sweep in a sub-folder and its own report.html and claims.json
    run_sweep(fake_experiment.EXPERIMENT, fake_experiment.specs(), tmp_path / "proj" / "sweep1", device="cpu",
              progress=False)
    (tmp_path / "proj" / "runs").mkdir()
    (tmp_path / "proj" / "report.html").write_text("<p>my report</p>")
    (tmp_path / "proj" / "claims.json").write_text("[]")
    before = tree_bytes(tmp_path / "proj")
    with pytest.raises(ZerolossInputError, match=r"not a zeroloss sweep or reproduce folder \(its sub-folders "
                                                 r"sweep1 are: report on each\)"):
        write_report(tmp_path / "proj")
    assert tree_bytes(tmp_path / "proj") == before
    report = write_report(tmp_path / "proj" / "sweep1")  # the sweep folder itself is zeroloss's
    assert report.html_path.is_file() and len(report.claims) == 2


@pytest.mark.parametrize("layout", ["manifest", "runs-only", "reproduce", "train", "two-timescale"])
def test_folders_of_earlier_versions_are_adopted_by_their_content(tmp_path, layout):
    """No marker: recognised by a valid manifest or exactly the files an earlier version wrote; marked on write."""
    old = tmp_path / "old"
    if layout in ("manifest", "runs-only"):
        store = RunStore(old)
        rid = store.write("demo", {"seed": 0}, loss_output([1.0]))
        if layout == "manifest":
            store.write_manifest("demo", [rid])
        (old / MARKER).unlink()
        expected = "sweep"
    elif layout == "reproduce":
        old.mkdir()
        (old / "reproduce.json").write_text(json.dumps({"paper": "p", "scale": "tiny", "experiments": []}))
        expected = "reproduce"
    else:
        old.mkdir()
        spec = ({"net": "fc", "width": 8, "depth": 2, "lr": [0.1], "steps": 3, "members": 1} if layout == "train"
                else {"eps": 1.0, "h": 1e-3, "t_max": 1.0, "neurons": 20, "repeats": 1})
        (old / "spec.json").write_text(json.dumps(spec))
        (old / "metrics.parquet").write_bytes(b"PAR1")
        (old / "summary.json").write_text("{}")
        expected = layout
    assert legacy_kind(old) == folder_kind(old) == expected
    claim_folder(old, expected)
    assert json.loads((old / MARKER).read_text())["kind"] == expected


def test_a_valid_looking_folder_with_other_content_is_not_adopted(tmp_path):
    (tmp_path / "spec.json").write_text(json.dumps({"net": "fc", "width": 8, "depth": 2, "lr": [0.1], "steps": 3,
                                                    "members": 1}))
    (tmp_path / "thesis.tex").write_text("keep")
    assert folder_kind(tmp_path) is None
    (tmp_path / "sweep.json").write_text(json.dumps({"experiment": "x", "run_ids": ["not-a-run-id"]}))
    assert folder_kind(tmp_path) is None


# ------------------------------------------------------------------------------------------- replacing a folder

def _build(out: Path, kind: str = "train", overwrite: bool = False, content: bytes = b"new") -> None:
    with building_folder(out, kind, overwrite) as tmp:
        (tmp / "runs").mkdir()
        atomic_write_bytes(tmp / "sweep.json", content)


def test_building_folder_appears_only_complete_and_overwrite_replaces_only_its_own_kind(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(RuntimeError), building_folder(out, "train") as tmp:
        (tmp / "runs").mkdir()
        raise RuntimeError("crash while writing")
    assert list(tmp_path.iterdir()) == [], "an error leaves neither the folder nor its temporary"
    _build(out, content=b"first")
    with pytest.raises(ZerolossInputError, match="already exists; choose a new folder or pass --overwrite"):
        _build(out)
    _build(out, overwrite=True, content=b"second")
    assert (out / "sweep.json").read_bytes() == b"second" and sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    with pytest.raises(ZerolossInputError, match="holds a `zeroloss train` output, not a `zeroloss two-timescale`"):
        _build(out, "two-timescale", overwrite=True)
    (out / "runs" / "my-notes.txt").write_text("keep")
    with pytest.raises(ZerolossInputError, match=r"--overwrite replaces only zeroloss output, and .*my-notes.txt"):
        _build(out, overwrite=True)
    assert (out / "runs" / "my-notes.txt").read_text() == "keep"


def test_building_folder_refuses_a_foreign_folder_even_with_overwrite(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "data.csv").write_text("keep")
    before = tree_bytes(tmp_path)
    with pytest.raises(ZerolossInputError, match="did not create"):
        _build(tmp_path / "mine", overwrite=True)
    assert tree_bytes(tmp_path) == before


def test_dead_writers_temporary_folders_are_removed_live_and_foreign_ones_kept(tmp_path):
    out = tmp_path / "run"
    dead = tmp_path / temporary_name("run")
    dead.mkdir()
    write_marker(dead, "train")
    empty = tmp_path / temporary_name("run")
    empty.mkdir()
    marking = tmp_path / temporary_name("run")  # killed while writing its marker: only the marker's temporary
    marking.mkdir()
    (marking / temporary_name(MARKER)).write_bytes(b'{"zeroloss_fol')
    live = tmp_path / temporary_name("run")
    live.mkdir()
    write_marker(live, "train")
    young = tmp_path / temporary_name("run")
    young.mkdir()
    write_marker(young, "train")
    user = tmp_path / ".run.0a1b2c3d.tmp"  # the pattern, but not zeroloss's content: kept
    user.mkdir()
    (user / "data.csv").write_text("keep")
    other = tmp_path / temporary_name("other")  # a temporary of another output: not this command's
    other.mkdir()
    for p in (dead, empty, marking, live, user, other):
        _age(p)
    holder = os.open(live, os.O_RDONLY)
    fcntl.flock(holder, fcntl.LOCK_EX)  # its writer is alive
    try:
        removed = clean_temporary_folders(out)
    finally:
        os.close(holder)
    assert sorted(removed) == sorted([dead, empty, marking])
    assert live.is_dir() and young.is_dir() and (user / "data.csv").is_file() and other.is_dir()


def test_stale_file_temporaries_are_removed_only_when_their_writer_is_gone(tmp_path):
    dead = tmp_path / temporary_name("G.npy")
    live = tmp_path / temporary_name("G.npy")
    user = tmp_path / "G.npy.tmp"
    for p in (dead, live, user):
        p.write_bytes(b"x")
        _age(p)
    fd = os.open(live, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        assert remove_stale_temporaries(tmp_path, "G.npy") == [dead]
    finally:
        os.close(fd)
    assert live.exists() and user.exists()


# ------------------------------------------------------------------------------------------- files, permissions

@pytest.mark.parametrize("umask", [0o022, 0o027, 0o077])
def test_files_and_folders_get_the_users_umask_permissions(tmp_path, umask):
    old = os.umask(umask)
    try:
        store = RunStore(tmp_path / "out")
        rid = store.write("demo", {"seed": 0}, loss_output([1.0]))
        store.write_manifest("demo", [rid])
        ensure_parent(tmp_path / "deep" / "er" / "G.npy", "--out")
        atomic_write_bytes(tmp_path / "deep" / "er" / "G.npy", b"x")
    finally:
        os.umask(old)
    paths = [tmp_path / "out", *(tmp_path / "out").rglob("*"), tmp_path / "deep", *(tmp_path / "deep").rglob("*")]
    modes = {str(p): oct(p.stat().st_mode & 0o777) for p in paths}
    want = {str(p): oct((0o777 if p.is_dir() else 0o666) & ~umask) for p in paths}
    # out, its marker, sweep.json, runs, the run folder and its 5 files; deep, er, G.npy
    assert modes == want and len(paths) == 13


def test_missing_parents_are_never_created_at_the_root(tmp_path):
    top = Path("/") / f"zeroloss-test-{uuid.uuid4().hex}"
    with pytest.raises(ZerolossInputError, match=f"--out: {top} does not exist"):
        ensure_parent(top / "G.npy", "--out")
    assert not top.exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(ZerolossInputError, match="is a file, not a folder"):
        ensure_parent(tmp_path / "file" / "sub" / "G.npy", "--out")
    ensure_parent(tmp_path / "a" / "b" / "G.npy", "--out")
    assert (tmp_path / "a" / "b").is_dir() and not (tmp_path / "a" / "b" / "G.npy").exists()


def test_check_folder_creates_nothing(tmp_path):
    assert check_folder(tmp_path / "x" / "y", "sweep") == "new"
    assert check_folder(tmp_path, "sweep") == "empty"
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------------- load

def test_load_refuses_a_folder_without_zeroloss_runs(tmp_path):
    with pytest.raises(ZerolossInputError, match="holds no zeroloss runs"):
        load(tmp_path)
    with pytest.raises(ZerolossInputError, match="holds no zeroloss runs"):
        load(_tensorboard_like(tmp_path / "tb"))
    RunStore(tmp_path / "s").write_manifest("demo", ["0123456789ab"])
    with pytest.raises(ZerolossInputError, match=r"holds no finished zeroloss run yet \(1 listed"):
        load(tmp_path / "s")
    with pytest.raises(ZerolossInputError, match="path: not a folder"):
        load(tmp_path / "missing")


@pytest.mark.parametrize("damage, what", [
    ("spec.json", "spec.json Expecting value"),
    ("summary.json", "summary.json Expecting value"),
    ("metrics.parquet", "metrics.parquet"),
    ("spec-shape", "spec.json lacks the keys"),
])
def test_an_unreadable_run_is_a_one_line_error_naming_it(tmp_path, damage, what):
    store = RunStore(tmp_path)
    rid = store.write("demo", {"seed": 0}, loss_output([1.0, 0.5]))
    run = tmp_path / "runs" / rid
    if damage == "spec-shape":
        (run / "spec.json").write_text('{"spec": {}}')
    elif damage == "metrics.parquet":
        (run / damage).write_bytes((run / damage).read_bytes()[:40])
    else:
        (run / damage).write_text("")
    with pytest.raises(ZerolossInputError) as info:
        load(tmp_path)
    message = str(info.value)
    assert message.startswith(f"{run}: unreadable zeroloss run: {what}") and "\n" not in message


def test_an_unreadable_manifest_is_a_one_line_error(tmp_path):
    store = RunStore(tmp_path)
    store.write("demo", {"seed": 0}, loss_output([1.0]))
    (tmp_path / "sweep.json").write_text("{not json")
    with pytest.raises(ZerolossInputError, match=r"sweep.json: unreadable zeroloss manifest"):
        load(tmp_path)


def test_load_names_an_earlier_versions_train_output(tmp_path):
    (tmp_path / "spec.json").write_text(json.dumps({"net": "fc", "width": 8, "depth": 2, "lr": [0.1], "steps": 3,
                                                    "members": 1}))
    (tmp_path / "metrics.parquet").write_bytes(b"PAR1")
    with pytest.raises(ZerolossInputError, match="`zeroloss train` output of an earlier zeroloss version"):
        load(tmp_path)
