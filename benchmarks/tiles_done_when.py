"""Issue 22's "done when", as one documented run (not a test: at n = 20 000 it writes 3.2 GB and takes a while).

    python -m benchmarks.tiles_done_when --n 20000 --workdir /scratch/tiles     # the issue's job (3 × 1.7 GiB)
    python -m benchmarks.tiles_done_when --n 4000 --solve-n 2000                # a smaller rehearsal

Steps (each prints what it did and how long it took; any mismatch raises):

1. X = n points on the sphere (d = 16) → ``X.npy``.
2. ``zeroloss kernel --kind ntk --net fc --depth 2 --activation relu --inputs X.npy --out K.zarr --block B
   --executor process --workers 2 --max-bytes 1GB`` as a subprocess; killed with SIGKILL (the driver) once a third
   of the tiles are recorded; then the same command again, and one of its pool workers is killed (SIGKILL) once two
   thirds are recorded; then the same command once more, which must find nothing left to do (or finish the rest).
   ``--kind gram`` runs the empirical NTK of a width-512 net (``--kind gram --width 512``) instead.
3. The same job with ``--executor local`` (one process) into ``K1.zarr``, and on a local Ray instance
   (``--executor ray --workers 2``) into ``KR.zarr``: every chunk of the three must be equal bit for bit (compared
   tile by tile, never the whole matrix in memory).
   3b. A worker's resident peak: a fresh process computes and writes the first tiles of row 0 again, as a pool
   worker does, and reads its peak from /proc, beside the ``--dry-run`` statement of the peak per worker.
4. Kernel regression on the stored kernel of the first ``--solve-n`` points (a separate job): the streaming solver
   (``predict_gd_mse`` with a budget too small for the matrix: conjugate gradients, tolerance 1e-10) against the
   in-memory solve; prints the largest relative difference of the test predictions and the CG iterations.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def _records(out: Path) -> int:
    records = out / "records"
    return len(list(records.glob("*.json"))) if records.is_dir() else 0


def _pool_workers(parent: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
                cmd = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == parent and b"spawn_main" in cmd:
                pids.append(int(entry))
    return pids


def _command(args: argparse.Namespace, inputs: Path, out: Path, executor: str) -> list[str]:
    kind = ["--kind", "ntk"] if args.kind == "ntk" else ["--kind", "gram", "--width", "512", "--seed", "0"]
    cmd = [sys.executable, "-m", "zeroloss", "kernel", *kind, "--net", "fc", "--depth", "2",
           "--activation", "relu", "--inputs", str(inputs), "--out", str(out), "--block", str(args.block),
           "--executor", executor, "--max-bytes", args.max_bytes, "--device", "cpu"]
    return cmd + (["--workers", "2"] if executor != "local" else [])


_WORKER_PEAK = """
import json, sys
from pathlib import Path
def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
from zeroloss.tiles.store import plan_of, read_job
from zeroloss.tiles.task import TileTask, run_tile
out = sys.argv[1]
before = status("VmRSS")
tiles = [t for t in plan_of(read_job(Path(out))).tiles() if t.i == 0][:4]
for k, t in enumerate(tiles):
    assert run_tile(TileTask(k, t, out, out, "peak", True)).error is None
print(json.dumps({"baseline": before, "peak": status("VmHWM"), "tiles": len(tiles)}))
"""


def _worker_peak(out: Path) -> dict:
    """A fresh process does what a pool worker does for the first tiles of row 0 of the finished job in ``out``
    (each chunk rewritten with the same values) and reads its resident peak from /proc: the interpreter and torch
    (its resident size before the first tile) and the tiles' own memory above it. glibc's mmap threshold is fixed,
    as in the memory tests, so that freed tiles are returned and the peak is that of live arrays."""
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    done = subprocess.run([sys.executable, "-c", _WORKER_PEAK, str(out)], capture_output=True, text=True, check=True,
                          env=env)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _run_until(cmd: list[str], out: Path, tiles: int, at: int, kill: str) -> None:
    """Start cmd; once ``at`` tiles are recorded kill its driver or one pool worker (SIGKILL); wait for the end."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while _records(out) < at and proc.poll() is None:
        time.sleep(0.05)
    if proc.poll() is not None:
        print(f"  finished before the kill: {proc.stdout.read().strip()}")
        return
    if kill == "driver":
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        print(f"  driver killed at {_records(out)}/{tiles} tiles after {time.perf_counter() - t0:.1f} s")
        return
    workers = _pool_workers(proc.pid)
    os.kill(workers[0], signal.SIGKILL)
    print(f"  worker {workers[0]} killed at {_records(out)}/{tiles} tiles after {time.perf_counter() - t0:.1f} s")
    stdout, stderr = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"the job failed after the worker kill: {stderr}")
    print(f"  {stdout.strip()} ({time.perf_counter() - t0:.1f} s)")


def _same_chunks(a: Path, b: Path) -> bool:
    from zeroloss.tiles import open_kernel

    ka, kb = open_kernel(a, in_memory=False), open_kernel(b, in_memory=False)
    return all(np.array_equal(ka._stored(t.i, t.j), kb._stored(t.i, t.j)) for t in ka.plan.tiles())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--kind", choices=["ntk", "gram"], default="ntk",
                        help="ntk: the infinite-width NTK; gram: the empirical NTK of a width-512 net (seed 0)")
    parser.add_argument("--block", type=int, default=2048)
    parser.add_argument("--max-bytes", default="1GB")
    parser.add_argument("--solve-n", type=int, default=5000)
    parser.add_argument("--ridge", type=float, default=0.0)
    parser.add_argument("--no-ray", action="store_true")
    parser.add_argument("--workdir", type=Path, default=Path("tiles_done_when"))
    args = parser.parse_args()
    import torch

    import zeroloss
    from zeroloss.data import sphere_data
    from zeroloss.tiles import TilePlan, kernel_job, open_kernel

    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    X, y = sphere_data(n=args.n, d=16, seed=0)
    np.save(work / "X.npy", X.numpy())
    tiles = len(TilePlan(args.n, args.n, args.block, True).tiles())
    out = work / "K.zarr"
    print(f"1. n = {args.n}, block {args.block}: {tiles} tiles, {args.n ** 2 * 8 / 2**30:.1f} GiB as float64")
    cmd = _command(args, work / "X.npy", out, "process")
    print("2. " + " ".join(cmd[1:]))
    _run_until(cmd, out, tiles, max(1, tiles // 3), "driver")
    _run_until(cmd, out, tiles, max(2, 2 * tiles // 3), "worker")
    final = subprocess.run(cmd, capture_output=True, text=True, check=True)
    print(f"  once more: {final.stdout.strip()}")
    for executor, folder in (("local", "K1.zarr"), *(() if args.no_ray else (("ray", "KR.zarr"),))):
        t0 = time.perf_counter()
        subprocess.run(_command(args, work / "X.npy", work / folder, executor), capture_output=True, text=True,
                       check=True)
        same = _same_chunks(out, work / folder)
        print(f"3. --executor {executor}: {time.perf_counter() - t0:.1f} s, bit-identical to the killed job: {same}")
        if not same:
            raise SystemExit("the resumed kernel differs from the uninterrupted one")
    if Path("/proc/self/status").exists():
        peak = _worker_peak(work / "K1.zarr")
        dry = subprocess.run(cmd + ["--dry-run"], capture_output=True, text=True, check=True).stdout
        stated = next((line for line in dry.splitlines() if line.startswith("peak memory per worker")), "?")
        above = (peak["peak"] - peak["baseline"]) / 2**20
        print(f"3b. one worker, {peak['tiles']} tiles: resident {peak['baseline'] / 2**20:.0f} MiB before the first "
              f"tile, peak {peak['peak'] / 2**20:.0f} MiB: the tiles took {above:.0f} MiB above it ({stated}; "
              f"budget {args.max_bytes} per worker)")
    m = args.solve_n
    Xs, ys = X[:m], y[:m]
    Xt, _ = sphere_data(n=200, d=16, seed=1)
    params = {"net": "fc", "depth": 2, "activation": "relu", "kind": "ntk"}
    kernel_job(Xs, "limit", params=params, out=work / "Ks.zarr", block=args.block, progress=False)
    kernel_job(Xt, "limit", X2=Xs, params=params, out=work / "Kt.zarr", block=args.block, progress=False)
    K, Kt = open_kernel(work / "Ks.zarr"), open_kernel(work / "Kt.zarr")
    t0 = time.perf_counter()
    ref = zeroloss.predict_gd_mse(K.torch(), ys, lr=1.0, time=[math.inf], k_test_train=Kt.torch(), ridge=args.ridge)
    t_mem = time.perf_counter() - t0
    t0 = time.perf_counter()
    got = zeroloss.predict_gd_mse(open_kernel(work / "Ks.zarr", in_memory=False), ys, lr=1.0, time=[math.inf],
                                  k_test_train=open_kernel(work / "Kt.zarr", in_memory=False), ridge=args.ridge,
                                  memory_budget=2**20)
    t_cg = time.perf_counter() - t0
    diff = float((got.test - ref.test).abs().max() / ref.test.abs().max())
    cond = float(torch.linalg.cond(K.torch()))
    print(f"4. n = {m}: in memory {t_mem:.1f} s, streaming CG {t_cg:.1f} s; largest relative difference of the "
          f"test predictions {diff:.2e} (condition number {cond:.3g}, CG tolerance 1e-10)")


if __name__ == "__main__":
    main()
