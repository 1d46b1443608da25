"""Executors: where the batches of a sweep run. One small interface, three engines.

An executor takes :class:`Task` s (one batch of run specs of one experiment, sharing a batch key) and yields
:class:`BatchResult` s as they finish, in any order. It never touches the store: the driver
(:func:`zeroloss.sweep.runner.run_sweep`) writes each run as soon as its batch comes back, so the only process
that writes a sweep directory is the driver.

* ``local`` — in this process, one batch after another (the default).
* ``process`` — a spawn-context process pool, ``workers`` processes; with ``device="cuda"`` worker *i* uses
  GPU *i* mod (number of GPUs), on CPU each worker gets cpu_count/workers torch threads outside its runs.
* ``ray`` — Ray tasks (``pip install zeroloss[ray]``); ``address`` joins an existing cluster (the code must be
  importable there), otherwise a private local instance bound to 127.0.0.1 is started and stopped. With CUDA
  each task asks for one GPU.

Faults: a worker that dies (``kill -9``, out of memory) costs an attempt, not the sweep: the process pool is
replaced and the lost tasks resubmitted, Ray retries the task; after :data:`MAX_ATTEMPTS` lost attempts a task
comes back failed and the driver goes on. Pool workers exit when the driver dies.

Every batch runs with its task's intra-op thread count (:mod:`zeroloss.threads`: one by default), restored
afterwards and recorded in env.json, so results do not depend on the process's thread count.

Examples:
    >>> with make_executor("local") as ex:
    ...     ex.name
    'local'
"""

from __future__ import annotations

import os
import re
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from zeroloss.errors import ZerolossInputError, choice
from zeroloss.threads import DEFAULT_THREADS, intra_op_threads

EXECUTORS = ("auto", "local", "process", "ray")


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def resolve_executor(name: str, workers: int | None, device: str) -> tuple[str, int | None]:
    """``auto`` → a process pool of one worker per usable core on the CPU (each run on one intra-op thread, so
    batches run side by side without oversubscribing), one per GPU on CUDA; ``local`` when that is one. Other
    names are returned as given."""
    if name != "auto":
        return name, workers
    if workers is None:
        if device.startswith("cuda"):
            import torch

            workers = torch.cuda.device_count()
        else:
            workers = usable_cores()
    return ("process", workers) if workers > 1 else ("local", None)


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
    from zeroloss.store import environment, now_iso

    device = task.device
    if _WORKER_DEVICE is not None and device.startswith("cuda"):
        device = _WORKER_DEVICE
    started, t0 = now_iso(), time.perf_counter()
    with intra_op_threads(task.threads):
        try:
            experiment = _find_experiment(task.experiment, task.module)
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


def _find_experiment(name: str, module: str) -> Any:
    """The experiment ``name``: from its own module when that registers it (a worker then imports no other
    paper module: numba, scipy and matplotlib stay unloaded unless the experiment needs them), else the registry."""
    import importlib

    from zeroloss.papers.base import REGISTRY
    from zeroloss.papers.registry import get_experiment

    if module:
        importlib.import_module(module)
        if name in REGISTRY:
            return REGISTRY[name]
    return get_experiment(name, module)


class Executor:
    """Interface: ``run(tasks)`` yields one :class:`BatchResult` per task as each finishes.

    ``fn`` (default :func:`execute_batch`) is what runs each task: any picklable top-level function of one task
    that returns a :class:`BatchResult` and never raises (the kernel jobs of :mod:`zeroloss.tiles` pass theirs);
    a task needs only an ``index``.
    """

    name = "base"

    def run(self, tasks: Sequence[Task], fn: Callable[[Any], BatchResult] = execute_batch) -> Iterator[BatchResult]:
        raise NotImplementedError

    def put(self, value: Any) -> Any:
        """``value`` made available to every task once: itself here; a Ray object reference for ``ray`` (a task
        then reads it with ``ray.get``, from its node's object store, instead of receiving a copy with each task)."""
        return value

    def close(self) -> None:
        """Release workers (a no-op for ``local``)."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LocalExecutor(Executor):
    """In this process, one batch after another."""

    name = "local"

    def run(self, tasks: Sequence[Task], fn: Callable[[Any], BatchResult] = execute_batch) -> Iterator[BatchResult]:
        for task in tasks:
            yield fn(task)


#: Attempts a task gets when the worker running it dies (killed, out of memory, a crash in native code) before it
#: is reported failed. The last attempt runs alone (nothing else in flight), so a task that kills its worker every
#: time is told apart from the neighbours that died with it.
MAX_ATTEMPTS = 3


def _init_worker(counter: Any, workers: int, device: str) -> None:
    """Process-pool initializer: exit with the driver, and pick this worker's GPU (round robin) or its CPU threads."""
    global _WORKER_DEVICE
    import torch

    _exit_with_parent()
    with counter.get_lock():
        index = counter.value
        counter.value += 1
    if device.startswith("cuda") and torch.cuda.is_available():
        _WORKER_DEVICE = f"cuda:{index % torch.cuda.device_count()}"
    else:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))


def _exit_with_parent() -> None:
    """End this worker as soon as the driver is gone (``kill -9`` included).

    A pool worker otherwise waits for work forever once its driver is killed (it holds both ends of the task
    queue, so it never sees end-of-file) and keeps its memory and GPU. The parent's sentinel becomes ready when
    the parent dies, whatever the cause.
    """
    import multiprocessing
    import multiprocessing.connection
    import threading

    parent = multiprocessing.parent_process()
    if parent is None or parent.sentinel is None:
        return

    def watch() -> None:
        multiprocessing.connection.wait([parent.sentinel])
        os._exit(1)

    threading.Thread(target=watch, name="zeroloss-exit-with-driver", daemon=True).start()


class ProcessExecutor(Executor):
    """A spawn-context process pool of ``workers`` processes (one device each) that survives dead workers.

    At most ``workers`` tasks are in flight, so every task lost when a worker dies was running. A dead worker
    breaks a :class:`~concurrent.futures.ProcessPoolExecutor` for good (every pending future fails with
    ``BrokenProcessPool``), so the pool is replaced by a fresh one and the lost tasks are submitted again; a task
    lost ``max_attempts − 1`` times runs its last attempt alone, and one lost ``max_attempts`` times comes back as
    a failed :class:`BatchResult` (the driver then retries its runs one at a time, or reports them failed) while
    the sweep goes on. :attr:`pools_replaced` counts the replacements.
    """

    name = "process"

    def __init__(self, workers: int | None = None, device: str = "cpu", max_attempts: int = MAX_ATTEMPTS) -> None:
        import multiprocessing

        import torch

        if workers is None:
            workers = torch.cuda.device_count() if device.startswith("cuda") else (os.cpu_count() or 1)
        self.workers = max(1, int(workers))
        self.max_attempts = max(1, int(max_attempts))
        self.pools_replaced = 0
        self._device = device
        self._ctx = multiprocessing.get_context("spawn")
        self._pool = self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(max_workers=self.workers, mp_context=self._ctx, initializer=_init_worker,
                                   initargs=(self._ctx.Value("i", 0), self.workers, self._device))

    def _replace_pool(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._pool = self._new_pool()
        self.pools_replaced += 1

    def run(self, tasks: Sequence[Task], fn: Callable[[Any], BatchResult] = execute_batch) -> Iterator[BatchResult]:
        from collections import deque
        from concurrent.futures.process import BrokenProcessPool

        queue = deque(tasks)
        lost = {task.index: 0 for task in tasks}  # attempts of each task whose worker died under it
        last_alone = max(1, self.max_attempts - 1)  # from this many losses on, a task runs alone
        running: dict[Future[BatchResult], Task] = {}
        while queue or running:
            while queue and len(running) < self.workers:
                alone = lost[queue[0].index] >= last_alone
                if running and (alone or any(lost[t.index] >= last_alone for t in running.values())):
                    break
                task = queue.popleft()
                try:
                    running[self._pool.submit(fn, task)] = task
                except BrokenProcessPool:  # the pool broke between two submissions
                    queue.appendleft(task)
                    break
            if not running:  # nothing could be submitted: the pool is broken
                self._replace_pool()
                continue
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            dead: list[Task] = []
            for fut in done:
                task = running.pop(fut)
                try:
                    yield fut.result()
                except BrokenProcessPool:
                    dead.append(task)
                except Exception:  # the result could not be unpickled, or similar: the driver decides
                    yield BatchResult(task.index, None, traceback.format_exc())
            if not dead:
                continue
            # A worker died: the pool is broken and every task still in flight is lost with it (or has just
            # finished: keep those results).
            for fut in list(running):
                task = running.pop(fut)
                try:
                    yield fut.result()
                except BrokenProcessPool:
                    dead.append(task)
                except Exception:
                    yield BatchResult(task.index, None, traceback.format_exc())
            self._replace_pool()
            for task in sorted(dead, key=lambda t: t.index, reverse=True):
                lost[task.index] += 1
                if lost[task.index] >= self.max_attempts:
                    yield BatchResult(task.index, None, f"WorkerDied: the worker process running this batch died on "
                                      f"each of {self.max_attempts} attempts (the last one alone)")
                else:
                    queue.appendleft(task)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


#: Ray tasks (not exceptions raised inside them: ``execute_batch`` returns those) whose worker dies are retried
#: by Ray this many times, i.e. :data:`MAX_ATTEMPTS` attempts in all.
RAY_RETRIES = MAX_ATTEMPTS - 1
#: The one address zeroloss binds a Ray instance it starts itself to: nothing it starts listens beyond this host.
RAY_LOCAL_HOST = "127.0.0.1"


class RayExecutor(Executor):
    """Ray tasks on an existing cluster (``address``) or on a private local instance started here.

    Without ``address`` a new local instance is started (``ray.init(address="local")``: never one found on the
    machine, running or recorded, nor ``RAY_ADDRESS``), its every server bound to 127.0.0.1 and no dashboard,
    and it is shut down by :meth:`close`. With ``address`` the driver joins that cluster and passes no resource
    counts (a cluster defines its own; Ray refuses them there). A task whose worker dies is retried by Ray
    (:data:`RAY_RETRIES`); one that still fails comes back as a failed :class:`BatchResult`.
    """

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
            extra = os.environ.get("ZEROLOSS_EXTRA_EXPERIMENTS")
            if extra:  # workers import the same extra experiment modules as this process
                kwargs["runtime_env"] = {"env_vars": {"ZEROLOSS_EXTRA_EXPERIMENTS": extra}}
            if address:
                ray.init(address=address, **kwargs)
            else:
                # A local instance: give its workers this process's import path (tests, user modules).
                paths = [p for p in sys.path if p and os.path.isdir(p) and "-packages" not in p]
                kwargs["job_config"] = ray.job_config.JobConfig(code_search_path=paths)
                if workers:
                    kwargs["num_cpus"] = int(workers)
                _init_local_ray(ray, kwargs)
            self._started = True
        self._gpus = 1 if device.startswith("cuda") else 0
        self._remotes: dict[Any, Any] = {}

    def _remote(self, fn: Callable[[Any], BatchResult]) -> Any:
        """``fn`` as a Ray remote function (one GPU per task with CUDA, :data:`RAY_RETRIES` retries), made once."""
        if fn not in self._remotes:
            self._remotes[fn] = self._ray.remote(num_cpus=1, num_gpus=self._gpus, max_retries=RAY_RETRIES)(fn)
        return self._remotes[fn]

    def put(self, value: Any) -> Any:
        return self._ray.put(value)

    def run(self, tasks: Sequence[Task], fn: Callable[[Any], BatchResult] = execute_batch) -> Iterator[BatchResult]:
        ray = self._ray
        remote = self._remote(fn)
        refs = {remote.remote(t): t for t in tasks}
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                try:
                    yield ray.get(ref)
                except Exception:  # the task's worker died on every attempt
                    yield BatchResult(refs[ref].index, None, traceback.format_exc())

    def close(self) -> None:
        if self._started:
            self._ray.shutdown()
            self._started = False


def _init_local_ray(ray: Any, kwargs: dict[str, Any]) -> None:
    """Start a new local Ray instance with every server bound to :data:`RAY_LOCAL_HOST`, and check it is.

    ``address="local"`` starts a new instance whatever is running or recorded on the machine (and ignores
    ``RAY_ADDRESS``). Ray binds its servers to the node's IP address and, on Linux, turns a loopback
    ``_node_ip_address`` into the machine's network address (``services.resolve_ip_for_localhost``); only on
    macOS and Windows, where multi-node clusters are off (``ray_constants.ENABLE_RAY_CLUSTER``), does it keep the
    loopback address. So that flag is switched off for the duration of this call — a single-node instance is all
    zeroloss starts — and the node address is checked afterwards: if this Ray version still put the node on
    another address, the instance is shut down and an error says so, rather than leave it listening there.
    """
    try:
        from ray._private import ray_constants
    except ImportError:  # pragma: no cover - a Ray without that module: rely on the check below
        ray_constants = None
    saved = getattr(ray_constants, "ENABLE_RAY_CLUSTER", None)
    if ray_constants is not None and saved is not None:
        ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        ray.init(address="local", _node_ip_address=RAY_LOCAL_HOST, **kwargs)
    finally:
        if ray_constants is not None and saved is not None:
            ray_constants.ENABLE_RAY_CLUSTER = saved
    addresses = sorted({node.get("NodeManagerAddress") for node in ray.nodes()})
    if addresses != [RAY_LOCAL_HOST]:
        ray.shutdown()
        raise ZerolossInputError(f"--executor: this Ray version put the local instance on {addresses}, not only "
                                 f"{RAY_LOCAL_HOST}; start a cluster yourself and pass --address")


#: The most workers an executor takes (processes or Ray CPUs on one machine; more is a typo, not a plan).
MAX_WORKERS = 1024


def check_executor_options(name: str, workers: int | None = None, address: str | None = None) -> None:
    """The executor options alone, before anything starts: a known name, ``workers`` for the engines that use it
    (1 … :data:`MAX_WORKERS`), ``address`` for Ray only."""
    choice(name, "--executor", EXECUTORS)
    if workers is not None:
        if not isinstance(workers, int) or isinstance(workers, bool) or not 1 <= workers <= MAX_WORKERS:
            raise ZerolossInputError(f"--workers: must be an integer from 1 to {MAX_WORKERS}, got {workers!r}")
        if name == "local":
            raise ZerolossInputError("--workers: only used with --executor auto, process or ray, got --executor "
                                     "local")
    if address is not None and name != "ray":
        raise ZerolossInputError(f"--address: only used with --executor ray, got --executor {name}")
    if address is not None:
        host, port = parse_ray_address(address)
        check_reachable(host, port)


#: Seconds the driver waits for a TCP connection to ``--address`` before refusing it (Ray itself retries for
#: minutes when nothing listens there).
RAY_CONNECT_TIMEOUT = 5.0
_RAY_ADDRESS = re.compile(r"^(?:ray://)?(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252}[A-Za-z0-9])?):"
                          r"([0-9]{1,5})$")


def parse_ray_address(address: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``ray://HOST:PORT`` (an IPv6 host in brackets) → (host, port); anything else is refused.

    Examples:
        >>> parse_ray_address("ray://10.0.0.5:10001")
        ('10.0.0.5', 10001)
    """
    match = _RAY_ADDRESS.match(address.strip()) if isinstance(address, str) else None
    if match is None or not 1 <= int(match.group(2)) <= 65535:
        raise ZerolossInputError(f"--address: must be HOST:PORT or ray://HOST:PORT of a running Ray cluster (port 1 to "
                                 f"65535), got {address!r}")
    return match.group(1).strip("[]"), int(match.group(2))


def check_reachable(host: str, port: int, timeout: float = RAY_CONNECT_TIMEOUT) -> None:
    """Refuse an address where nothing accepts a TCP connection within ``timeout`` seconds."""
    import socket

    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        reason = f"no answer within {timeout:g} s" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        raise ZerolossInputError(f"--address: nothing answers at {host}:{port} ({reason}); "
                                 "start the Ray cluster first, or leave --address out to start a local one") from None


def make_executor(name: str, workers: int | None = None, device: str = "cpu", address: str | None = None,
                  ) -> Executor:
    """``auto``, ``local``, ``process`` or ``ray`` (see the module docstring and :func:`resolve_executor`)."""
    check_executor_options(name, workers, address)
    name, workers = resolve_executor(name, workers, device)
    if name == "process":
        return ProcessExecutor(workers, device)
    if name == "ray":
        return RayExecutor(address, device, workers)
    return LocalExecutor()
