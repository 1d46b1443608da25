"""A user's model as a kernel job carries it to its workers: serialised once, rebuilt (once) in each worker.

Two sources:

* ``"FILE.py:FACTORY"`` (the CLI's ``--model``, as ``zeroloss diagnose`` reads it) — the driver imports FILE,
  builds ``FACTORY(width)`` (or ``FACTORY()``) with torch's generator seeded ``seed``, and stores the file's path,
  the factory's name, the width, the seed and the model's ``state_dict``. A worker imports the same file, calls the
  factory and loads that state dict, so its parameters are the driver's bit for bit whatever the factory draws.
* an ``nn.Module`` object — pickled whole (``torch.save``); its class must be importable by the workers (any model
  built from ``torch.nn`` layers is; a class defined in ``__main__`` works only with ``executor="local"``).

The fingerprint of a model (:func:`model_fingerprint`) hashes its parameters and buffers (names, dtypes, shapes and
bytes), its printed structure and, for a file, the file's bytes: resuming a job with another model is refused.

Examples:
    >>> from torch import nn
    >>> params, blob = serialise_model(nn.Linear(3, 2))
    >>> params["source"], type(load_model(KernelSpec("entk", params, blob), "cpu")).__name__
    ('module', 'Linear')
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any

import torch
from torch import nn

from zeroloss.errors import ZerolossInputError
from zeroloss.tiles.kinds import KernelSpec
from zeroloss.usercode import import_user_file


def _state_hash(model: nn.Module) -> str:
    h = hashlib.sha256(repr(model).encode())
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _import_file(path: Path) -> Any:
    """Import the Python file ``path`` once per process (under the same name in every process)."""
    return import_user_file(path, reuse=True)


def _build_from_file(path: Path, factory: str, width: int | None, seed: int) -> nn.Module:
    from zeroloss.cli.diagnose import call_factory

    fn = getattr(_import_file(path), factory, None)
    if fn is None or not callable(fn):
        raise ZerolossInputError(f"--model: {path.name} has no callable {factory!r}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return call_factory(fn, width, f"{path.name}:{factory}")


def serialise_model(model: nn.Module | str, width: int | None = None, seed: int = 0) -> tuple[dict[str, Any], bytes]:
    """(JSON params, bytes) that carry ``model`` to the workers (see the module docstring)."""
    buffer = io.BytesIO()
    if isinstance(model, str):
        path_text, sep, factory = model.rpartition(":")
        if not sep or not path_text.endswith(".py") or not factory.isidentifier():
            raise ZerolossInputError(f"--model: must be FILE.py:FACTORY, got {model!r}")
        path = Path(path_text)
        if not path.is_file():
            raise ZerolossInputError(f"--model: no such file {path_text!r}")
        built = _build_from_file(path, factory, width, seed)
        torch.save({k: v.detach().cpu() for k, v in built.state_dict().items()}, buffer)
        params = {"source": "file", "file": str(path.resolve()), "factory": factory, "width": width, "seed": seed,
                  "file_sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "model_sha256": _state_hash(built)}
        return params, buffer.getvalue()
    if not isinstance(model, nn.Module):
        raise ZerolossInputError(f"model: must be a torch.nn.Module or 'FILE.py:FACTORY', got {type(model).__name__}")
    torch.save(model, buffer)
    return {"source": "module", "class": type(model).__qualname__, "model_sha256": _state_hash(model)}, \
        buffer.getvalue()


def load_model(spec: KernelSpec, device: torch.device | str) -> nn.Module:
    """The model of an ``entk`` spec, rebuilt here (on ``device``)."""
    if spec.model is None:
        raise ZerolossInputError("model: an entk kernel needs a model")
    params = spec.params
    if params.get("source") == "file":
        model = _build_from_file(Path(params["file"]), params["factory"], params.get("width"), int(params["seed"]))
        state = torch.load(io.BytesIO(spec.model), map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    else:
        model = torch.load(io.BytesIO(spec.model), map_location="cpu", weights_only=False)
    return model.to(device)


def model_fingerprint(spec: KernelSpec) -> str | None:
    """The model's identity (parameters, buffers, structure, and the file's bytes for a file), or None."""
    if spec.model is None:
        return None
    p = spec.params
    return hashlib.sha256(f"{p.get('model_sha256')}:{p.get('file_sha256')}".encode()).hexdigest()
