"""Helpers shared by several test files (fixtures live in conftest.py; the fake experiment in fake_experiment.py).

Import them as ``from helpers import ...`` (pytest puts this folder on ``sys.path``: the tests folder has no
``__init__.py``).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from zeroloss.papers.base import RunOutput
from zeroloss.store import load

#: A fenced ```python block of a Markdown file: its code is group 1.
PYTHON_FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", flags=re.MULTILINE | re.DOTALL)


def markdown_python_blocks(path: Path) -> list[tuple[str, str, int]]:
    """(title, code, first line) of every ```python block of the Markdown file ``path``: the title is the nearest
    heading above the block, the first line the file's line number of the block's first line of code."""
    text = path.read_text(encoding="utf-8")
    blocks = []
    for match in PYTHON_FENCE.finditer(text):
        headings = re.findall(r"^#+\s*(.+)$", text[: match.start()], flags=re.MULTILINE)
        title = headings[-1].strip() if headings else path.name
        blocks.append((title, match.group(1), text.count("\n", 0, match.start(1)) + 1))
    return blocks


def run_markdown_block(path: Path, code: str, first_line: int, name: str = "__doc_example__",
                       given: dict | None = None) -> tuple[dict, str]:
    """Execute one block of ``path`` in a fresh namespace; return (namespace, what it printed).

    ``given``: names the block uses but leaves to the reader (its comments say what they are). A traceback names the
    Markdown file and the line there. Any warning the block raises is an error: a user who copies the example would
    see it.
    """
    namespace: dict = {"__name__": name, **(given or {})}
    out = io.StringIO()
    code = "\n" * (first_line - 1) + code  # line numbers as in the file
    with contextlib.redirect_stdout(out), warnings.catch_warnings():
        warnings.simplefilter("error")
        exec(compile(code, str(path), "exec"), namespace)  # noqa: S102 - the project's own documented example
    return namespace, out.getvalue()


#: The text of a ``status(field)`` function reading ``/proc/self/status`` (bytes), prepended to the scripts that
#: measure a fresh process's resident memory with ``python -c``.
STATUS_FUNCTION = '''
def status(field):
    """A /proc/self/status field in bytes: VmRSS (resident now), VmHWM (peak resident)."""
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) * 1024
    raise KeyError(field)
'''


def run_values(out: Path | str) -> pd.DataFrame:
    """The stored values of a results folder, in a fixed order: to compare two sweeps value for value."""
    df = load(out)
    return df[["run_id", "step", "metric", "value", "diverged"]].sort_values(["run_id", "step"]).reset_index(drop=True)


def tree_bytes(root: Path) -> dict[str, bytes | None]:
    """Every path under ``root`` with its bytes (None for folders): to show that nothing changed."""
    return {str(p.relative_to(root)): (None if p.is_dir() else p.read_bytes()) for p in sorted(root.rglob("*"))}


def loss_output(values, **summary) -> RunOutput:
    """A run's output whose metrics are the loss ``values`` at steps 0, 1, …, with ``summary``."""
    return RunOutput(pd.DataFrame({"step": np.arange(len(values)), "metric": "loss", "value": values}), summary)


def child_pids(parent: int, needle: bytes) -> list[int]:
    """Pids of the live processes whose parent is ``parent`` (any parent when < 0) and whose command line contains
    ``needle`` (``b"spawn_main"``: a spawn-context pool worker, not the resource tracker)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if (parent < 0 or int(stat.rsplit(")", 1)[1].split()[1]) == parent) and needle in cmdline:
            pids.append(int(entry))
    return pids


def alive(pid: int) -> bool:
    """Whether process ``pid`` still runs: its /proc entry exists and it is not a zombie (a killed child keeps its
    entry until its parent reaps it; a zombie holds no resources, so waiting for the entry to vanish only waits)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a − b| / max |b| (on the CPU)."""
    a, b = a.detach().cpu(), b.detach().cpu()
    return float((a - b).abs().max() / b.abs().max())


# ------------------------------------------------------------------- marion2023: synthetic result tables

#: Logged slow times of a synthetic marion2023 run (11 points).
TAU = np.linspace(0.0, 1.0, 11)


def run_rows(run_id: str, spec: dict, summary: dict, metrics: dict[str, np.ndarray]) -> pd.DataFrame:
    """One run's tidy rows (as ``zeroloss.load`` gives them): each metric over the steps of :data:`TAU`."""
    frames = [pd.DataFrame({"step": np.arange(len(TAU)), "metric": name, "value": values})
              for name, values in metrics.items()]
    frame = pd.concat(frames, ignore_index=True)
    for key, value in {"run_id": run_id, **spec, **summary}.items():
        frame[key] = value
    return frame


def positions_rows(run_id: str, step: int, u: np.ndarray, prefix: str = "") -> pd.DataFrame:
    """The final snapshot of a run's positions (``{prefix}u_j``), as run_sgd_batch stores it."""
    return pd.DataFrame({"run_id": run_id, "step": step, "metric": [f"{prefix}u_{j}" for j in range(u.size)],
                         "value": u})


#: Final positions: a neuron on every jump (plus spread ones), and the same with the jump at 0.5 left 10η away.
COVERING = np.array([0.05, 0.1, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.9])
UNCOVERING = np.where(COVERING == 0.5, 0.5 + 10 * 4e-3, COVERING)  # η = 4·10⁻³


def with_positions(frame: pd.DataFrame, u: np.ndarray, prefix: str = "") -> pd.DataFrame:
    """Append the final snapshot ``u`` to one run's rows (spec and summary columns copied)."""
    rows = positions_rows(frame["run_id"].iloc[0], int(frame["step"].max()), u, prefix)
    for col in frame.columns:
        if col not in rows:
            rows[col] = frame[col].iloc[0]
    return pd.concat([frame, rows], ignore_index=True)


# ---------------------------------------------------------------------------------------------- the entk zoo
# The entk zoo (used by the test_ntk_entk* files): an MLP with biases; 1-d, 2-d and 3-d CNNs with stride,
# padding (zeros, circular, 'same'), dilation and groups; a small ResNet with BatchNorm (running statistics set away
# from 0/1) and GroupNorm; a Transformer encoder layer (attention uses raw parameters, not nn.Linear); an embedding +
# GRU model on integer token ids; a model with a (2, 3) output per sample; a model whose decoder is tied to its
# embedding and which calls one Linear twice; LayerNorm on sequences.

RTOL = 1e-10  # relative to the largest entry; see the module docstring


class ResBlock(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.bn1(self.conv1(x)))
        return torch.tanh(x + self.bn2(self.conv2(h)))


class SmallResNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.gn = nn.GroupNorm(2, 4)
        self.block = ResBlock(4)
        self.head = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.block(torch.tanh(self.gn(self.stem(x))))
        return self.head(h.mean(dim=(2, 3)))


class Transformer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.TransformerEncoderLayer(d_model=8, nhead=2, dim_feedforward=12, dropout=0.1,
                                                batch_first=True)
        self.head = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.layer(x).mean(1))


class EmbedGRU(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(11, 6, padding_idx=0)
        self.gru = nn.GRU(6, 5, batch_first=True)
        self.head = nn.Linear(5, 2)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        out, _ = self.gru(self.embed(ids))
        return self.head(out[:, -1])


class TiedTwice(nn.Module):
    """Decoder weight tied to the embedding, and one Linear called twice."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(9, 6)
        self.shared = nn.Linear(6, 6)
        self.norm = nn.LayerNorm(6)
        self.decoder = nn.Linear(6, 9, bias=False)
        self.decoder.weight = self.embed.weight

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        h = self.embed(ids)  # (n, T, 6): the Linear below is shared over the T positions
        h = torch.tanh(self.shared(h))
        h = torch.tanh(self.shared(self.norm(h)))
        return self.decoder(h.mean(1))


class MultiHead(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, 10), nn.Softplus())
        self.head = nn.Linear(10, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x)).view(-1, 2, 3)


class Conv3d(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(2, 4, (2, 3, 2), stride=(1, 2, 1), padding=1, dilation=(1, 1, 2))
        self.norm = nn.BatchNorm3d(4)
        self.head = nn.Linear(4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.norm(self.conv(x))).mean(dim=(2, 3, 4)))


def _set_running_stats(model: nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(0.3 * torch.randn(m.running_mean.shape, generator=g))
            m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=g))
            if m.affine:
                m.weight.data.copy_(1 + 0.2 * torch.randn(m.weight.shape, generator=g))
                m.bias.data.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
        if isinstance(m, (nn.LayerNorm, nn.GroupNorm)) and m.weight is not None:
            m.weight.data.copy_(1 + 0.2 * torch.randn(m.weight.shape, generator=g))
            m.bias.data.copy_(0.1 * torch.randn(m.bias.shape, generator=g))


def make_model(name: str, n: int = 5, seed: int = 0) -> tuple[nn.Module, torch.Tensor]:
    """A zoo model (float64, in training mode as a user would hold it) and n inputs for it."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed + 1)
    if name == "mlp":
        model = nn.Sequential(nn.Linear(5, 12), nn.Tanh(), nn.Linear(12, 12), nn.GELU(), nn.Linear(12, 3))
        x = torch.randn(n, 5, generator=g)
    elif name == "cnn1d":
        model = nn.Sequential(
            nn.Conv1d(2, 6, 3, stride=2, padding=1, groups=2), nn.Tanh(),
            nn.Conv1d(6, 4, 3, dilation=2, padding=2, padding_mode="circular"), nn.Tanh(),
            nn.Flatten(), nn.Linear(4 * 6, 2),
        )
        x = torch.randn(n, 2, 11, generator=g)
    elif name == "cnn2d":
        model = nn.Sequential(
            nn.Conv2d(3, 6, (3, 2), stride=(2, 1), padding=(1, 0), dilation=(1, 2), groups=3), nn.Softplus(),
            nn.Conv2d(6, 4, 3, padding="same", bias=False), nn.Tanh(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2),
        )
        x = torch.randn(n, 3, 7, 8, generator=g)
    elif name == "cnn3d":
        model = Conv3d()
        x = torch.randn(n, 2, 3, 5, 4, generator=g)
    elif name == "resnet-bn":
        model = SmallResNet()
        x = torch.randn(n, 3, 6, 6, generator=g)
    elif name == "transformer":
        model = Transformer()
        x = torch.randn(n, 4, 8, generator=g)
    elif name == "embed-gru":
        model = EmbedGRU()
        x = torch.randint(0, 11, (n, 7), generator=g)
        x[0, :2] = 0  # padding tokens
    elif name == "multi-head":
        model = MultiHead()
        x = torch.randn(n, 4, generator=g)
    elif name == "tied-twice":
        model = TiedTwice()
        x = torch.randint(0, 9, (n, 4), generator=g)
    else:
        raise KeyError(name)
    model = model.double()
    _set_running_stats(model, seed)
    model.train()
    return model, x.double() if x.is_floating_point() else x


ZOO = ["mlp", "cnn1d", "cnn2d", "cnn3d", "resnet-bn", "transformer", "embed-gru", "multi-head", "tied-twice"]


def loop_reference(model: nn.Module, x1: torch.Tensor, x2: torch.Tensor | None = None) -> torch.Tensor:
    """Θ (n1, n2, k, k) by plain autograd, one sample and one output at a time (eval mode, float64)."""
    x2 = x1 if x2 is None else x2
    params = [p for p in model.parameters() if p.requires_grad]
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        def jac(x: torch.Tensor) -> torch.Tensor:
            rows = []
            for i in range(x.shape[0]):
                out = model(x[i : i + 1]).reshape(-1)
                for a in range(out.numel()):
                    grads = torch.autograd.grad(out[a], params, retain_graph=True, allow_unused=True)
                    rows.append(torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1)
                                           for g, p in zip(grads, params, strict=True)]))
            k = rows[0].numel() and len(rows) // x.shape[0]
            return torch.stack(rows).reshape(x.shape[0], k, -1)

        J1, J2 = jac(x1), jac(x2)
    finally:
        for m, flag in flags:
            m.training = flag
    return torch.einsum("iap,jbp->ijab", J1, J2)


def assert_close_rel(actual: torch.Tensor, expected: torch.Tensor, rtol: float = RTOL) -> None:
    scale = expected.abs().max()
    err = (actual - expected).abs().max()
    assert err <= rtol * scale, f"max error {err:.3g} vs scale {scale:.3g}"
