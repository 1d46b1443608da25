"""Executors: where the batches of a sweep run. One small interface, three engines.

An executor takes :class:`Task` s (one batch of run specs of one experiment, sharing a batch key) and yields
:class:`BatchResult` s as they finish, in any order. It never touches the store: the driver
(:func:`zeroloss.sweep.runner.run_sweep`) writes each run as soon as its batch comes back, so the only process
that writes a sweep directory is the driver.

* ``local`` — in this process, one batch after another (the default).
* ``process`` — a spawn-context process pool, ``workers`` processes; with ``device="cuda"`` worker *i* uses
  GPU *i* mod (number of GPUs), on CPU each worker gets cpu_count/workers torch threads outside its runs.
* ``ray`` — Ray tasks (``pip install zeroloss[ray]``); ``address`` joins an existing cluster (the code must be
  importable there), otherwise a local instance is started and stopped. With CUDA each task asks for one GPU.

Every batch runs with its task's intra-op thread count (:mod:`zeroloss.sweep.threads`: one by default), restored
afterwards and recorded in env.json, so results do not depend on the process's thread count.

Example:
    >>> with make_executor("local") as ex:
    ...     ex.name
    'local'
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from zeroloss.errors import ZerolossInputError, choice
from zeroloss.sweep.threads import DEFAULT_THREADS, intra_op_threads

EXECUTORS = ("local", "process", "ray")


@dataclass(frozen=True)
class Task:
    """One batch: ``specs`` of experiment ``experiment`` (importable from ``module``) on ``device``, run with
    ``threads`` intra-op threads."""

    index: int
    experiment: str
    module: str
    specs: list[dict[str, Any]]
    device: str
    threads: int = DEFAULT_THREADS


@dataclass
class BatchResult:
    """What came back for one task: outputs in spec order, or the error text (a traceback)."""

    index: int
    outputs: list[Any] | None
    error: str | None
    env: dict[str, Any] = field(default_factory=dict)


_WORKER_DEVICE: str | None = None


def execute_batch(task: Task) -> BatchResult:
    """Run one task here (in whichever process or Ray worker this is); never raises."""
    from zeroloss.experiments.registry import get_experiment
    from zeroloss.store import environment, now_iso

    device = task.device
    if _WORKER_DEVICE is not None and device.startswith("cuda"):
        device = _WORKER_DEVICE
    started, t0 = now_iso(), time.perf_counter()
    with intra_op_threads(task.threads):
        try:
            experiment = get_experiment(task.experiment, task.module)
            outputs = list(experiment.run_batch(task.specs, device))
            if len(outputs) != len(task.specs):
                raise RuntimeError(f"{task.experiment}.run_batch returned {len(outputs)} outputs "
                                   f"for {len(task.specs)} specs")
            error = None
        except Exception:  # returned, not raised: the driver decides (retry alone, or record the failure)
            outputs, error = None, traceback.format_exc()
        env = environment(device)  # inside: records the thread count the batch ran with
    env.update({"start": started, "end": now_iso(), "batch_seconds": time.perf_counter() - t0,
                "batch_size": len(task.specs), "pid": os.getpid()})
    return BatchResult(task.index, outputs, error, env)


class Executor:
    """Interface: ``run(tasks)`` yields one :class:`BatchResult` per task as each finishes."""

    name = "base"

    def run(self, tasks: Sequence[Task]) -> Iterator[BatchResult]:
        raise NotImplementedError

    def close(self) -> None:
        """Release workers (a no-op for ``local``)."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LocalExecutor(Executor):
    """In this process, one batch after another."""

    name = "local"

    def run(self, tasks: Sequence[Task]) -> Iterator[BatchResult]:
        for task in tasks:
            yield execute_batch(task)


def _init_worker(counter: Any, workers: int, device: str) -> None:
    """Process-pool initializer: pick this worker's GPU (round robin) or its share of CPU threads."""
    global _WORKER_DEVICE
    import torch

    with counter.get_lock():
        index = counter.value
        counter.value += 1
    if device.startswith("cuda") and torch.cuda.is_available():
        _WORKER_DEVICE = f"cuda:{index % torch.cuda.device_count()}"
    else:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))


class ProcessExecutor(Executor):
    """A spawn-context process pool of ``workers`` processes (one device each)."""

    name = "process"

    def __init__(self, workers: int | None = None, device: str = "cpu") -> None:
        import multiprocessing

        import torch

        if workers is None:
            workers = torch.cuda.device_count() if device.startswith("cuda") else (os.cpu_count() or 1)
        self.workers = max(1, int(workers))
        ctx = multiprocessing.get_context("spawn")
        self._pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=ctx, initializer=_init_worker,
                                         initargs=(ctx.Value("i", 0), self.workers, device))

    def run(self, tasks: Sequence[Task]) -> Iterator[BatchResult]:
        futures: dict[Future[BatchResult], Task] = {self._pool.submit(execute_batch, t): t for t in tasks}
        pending = set(futures)
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                try:
                    yield fut.result()
                except Exception:  # a worker died (BrokenProcessPool) or the result could not be unpickled
                    yield BatchResult(futures[fut].index, None, traceback.format_exc())

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


class RayExecutor(Executor):
    """Ray tasks on an existing cluster (``address``) or on a local instance started here."""

    name = "ray"

    def __init__(self, address: str | None = None, device: str = "cpu", workers: int | None = None) -> None:
        try:
            import ray
        except ImportError:
            raise ZerolossInputError("--executor: ray is not installed; pip install 'zeroloss[ray]' "
                                     "or use local/process") from None
        self._ray = ray
        self._started = False
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "logging_level": "ERROR",
                                      "configure_logging": False}
            if address:
                kwargs["address"] = address
            else:
                # A local instance: give its workers this process's import path (tests, user modules).
                paths = [p for p in sys.path if p and os.path.isdir(p) and "-packages" not in p]
                kwargs["job_config"] = ray.job_config.JobConfig(code_search_path=paths)
                if workers:
                    kwargs["num_cpus"] = int(workers)
            extra = os.environ.get("ZEROLOSS_EXTRA_EXPERIMENTS")
            if extra:  # workers import the same extra experiment modules as this process
                kwargs["runtime_env"] = {"env_vars": {"ZEROLOSS_EXTRA_EXPERIMENTS": extra}}
            ray.init(**kwargs)
            self._started = True
        gpus = 1 if device.startswith("cuda") else 0
        self._remote = ray.remote(num_cpus=1, num_gpus=gpus, max_retries=0)(execute_batch)

    def run(self, tasks: Sequence[Task]) -> Iterator[BatchResult]:
        ray = self._ray
        refs = {self._remote.remote(t): t for t in tasks}
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                try:
                    yield ray.get(ref)
                except Exception:  # the task's worker died
                    yield BatchResult(refs[ref].index, None, traceback.format_exc())

    def close(self) -> None:
        if self._started:
            self._ray.shutdown()
            self._started = False


def make_executor(name: str, workers: int | None = None, device: str = "cpu", address: str | None = None,
                  ) -> Executor:
    """``local``, ``process`` or ``ray`` (see the module docstring)."""
    choice(name, "--executor", EXECUTORS)
    if workers is not None and (not isinstance(workers, int) or workers < 1):
        raise ZerolossInputError(f"--workers: must be a positive integer, got {workers!r}")
    if address and name != "ray":
        raise ZerolossInputError(f"--address: only used with --executor ray, got --executor {name}")
    if name == "process":
        return ProcessExecutor(workers, device)
    if name == "ray":
        return RayExecutor(address, device, workers)
    return LocalExecutor()
