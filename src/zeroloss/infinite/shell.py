"""``zeroloss kernel --model FILE.py:FACTORY``: a user's model's infinite-width kernel from the shell.

    zeroloss kernel --model my_net.py:make_net --inputs X.npy --kind nngp|ntk --out K.npy

``FACTORY()`` must return the ``nn.Module`` (as for ``zeroloss diagnose``); X.npy holds (n, *shape) inputs as the
model takes them (no unit-norm requirement). The memory is checked against the budget (``--max-bytes``) before the
kernel is computed; K is written atomically, then λ_min, λ_max and the condition number are printed (``--json``:
as JSON). Errors are one line naming the option (the CLI's ``error: <field>: ...``, exit 2), no file written.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

#: The kinds one file can hold.
SHELL_KINDS = ("nngp", "ntk")


def model_kernel_command(model: str, inputs: Path, out: Path, kind: str, parameterisation: str, nodes: int,
                         device: Any, overwrite: bool, as_json: bool, max_bytes: str | None) -> dict:
    """Run the command (see the module docstring); returns the printed summary."""
    import numpy as np
    import torch
    import typer

    from zeroloss.budget import FLAG, check_memory, resolve_budget
    from zeroloss.cli.common import prepare_output_file
    from zeroloss.cli.diagnose import call_factory, load_factory
    from zeroloss.errors import ZerolossInputError, choice
    from zeroloss.infinite.compute import PARAMETERISATIONS, infinite_kernel, infinite_kernel_memory_bytes
    from zeroloss.spectra import spectrum
    from zeroloss.store import atomic_write_bytes, output_errors

    choice(kind, "--kind", SHELL_KINDS)
    choice(parameterisation, "--parameterisation", PARAMETERISATIONS)
    budget = resolve_budget(max_bytes, FLAG)
    from zeroloss.cli.files import read_array

    array = read_array(inputs, "--inputs", budget=budget)  # regular files only, sized from the header first
    if array.dtype.kind not in "fiu" or array.ndim < 2 or array.shape[0] < 1:
        raise ZerolossInputError(f"--inputs: must be a numeric array (n, *shape), got {array.dtype} {array.shape}")
    X = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float64))
    factory, shown = load_factory(model)
    net = call_factory(factory, None, shown)
    n = X.shape[0]
    need = infinite_kernel_memory_bytes(net, tuple(X.shape[1:]), n, kind=kind) + 2 * 8 * n * n
    check_memory(need, budget, field="--inputs", what=f"the {n} × {n} {kind} kernel", hint="use fewer inputs")
    prepare_output_file(out, "--out", overwrite)
    res = infinite_kernel(net, X, kind=kind, parameterisation=parameterisation, nodes=nodes, device=device,
                          memory_budget=budget.bytes)
    K = getattr(res, kind).cpu()
    buffer = io.BytesIO()
    np.save(buffer, K.numpy())
    with output_errors("--out", out):
        atomic_write_bytes(out, buffer.getbuffer())
    spec = spectrum(K, memory_budget=budget.bytes)
    summary = {"lambda_min": spec.lambda_min, "lambda_max": spec.lambda_max, "condition": spec.condition,
               "n": n, "kind": kind, "model": shown, "parameterisation": parameterisation, "outputs": res.outputs,
               "quadrature_error": res.quadrature_error,
               "laws": {name: str(law) for name, law in res.laws.items()}}
    if as_json:
        typer.echo(json.dumps(summary))
    else:
        typer.echo(f"{kind} kernel of {shown} ({parameterisation}): lambda_min {spec.lambda_min:.6g}  lambda_max "
                   f"{spec.lambda_max:.6g}  condition {spec.condition:.4g}")
        for name, law in res.laws.items():
            typer.echo(f"  {name}: {law}")
        typer.echo(f"wrote {out}")
    return summary
