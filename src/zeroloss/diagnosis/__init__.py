"""Convergence diagnostics for any ``nn.Module`` (issue 13): is *my* network in the regime the theorems describe?

- :func:`diagnose` — train the model, its linearisation and the closed-form kernel prediction side by side;
  record losses, gaps, parameter movement, eNTK drift, λ_min(Θ_t), the PL ratio, the per-step contraction and an
  estimate of Chatterjee's α; end with a :class:`Verdict` in numbers.
- :func:`diagnose_memory_bytes` — the memory :func:`diagnose` states and checks before it trains.
- :func:`diagnose_widths` — the same over a family ``factory(width)``: slopes of movement, drift and gap against
  width (a coord-check for the convergence theory), with a figure.
"""

from zeroloss.diagnosis.memory import diagnose_memory_bytes
from zeroloss.diagnosis.run import LR_FRACTION, Diagnosis, diagnose
from zeroloss.diagnosis.verdict import DRIFT_MAX, GAP_MAX, MOVEMENT_MAX, RATE_TOLERANCE, Verdict
from zeroloss.diagnosis.widths import Slope, WidthSweep, diagnose_widths

__all__ = ["DRIFT_MAX", "Diagnosis", "GAP_MAX", "LR_FRACTION", "MOVEMENT_MAX", "RATE_TOLERANCE", "Slope", "Verdict",
           "WidthSweep", "diagnose", "diagnose_memory_bytes", "diagnose_widths"]
