"""Du, Lee, Li, Wang, Zhai (ICML 2019): GD finds global minima of deep over-parameterised nets (docs/theory.md §1).

- :mod:`~zeroloss.papers.du2019.theory`: what the theorems predict — contraction bound, largest stable step, width
  and step scalings, the kernel's loss prediction along GD.
- :mod:`~zeroloss.papers.du2019.runs`: how one batch of the experiments trains (G(0), λ_min, GD, probes).
- :mod:`~zeroloss.papers.du2019.ladder`: how one batch of ``du2019.theorem`` trains (a ladder of steps down to the
  theorems' own, λ₀ from the limit kernel).
- :mod:`~zeroloss.papers.du2019.claims`: the machine-checked statements, with provenance and negative controls;
  :mod:`~zeroloss.papers.du2019.claims_theorem` those on the theorems as stated (λ₀, the lemmas, the n-dependence).
- :mod:`~zeroloss.papers.du2019.plots`: the figures.
- :mod:`~zeroloss.papers.du2019.experiments`: the registered experiments (``du2019.kernel``, ``du2019.theorem``,
  ``du2019.samples``, ``du2019.depth``, ``du2019.conv``), imported on the first registry lookup.

The networks themselves (fully connected, ResNet, convolutional ResNet) are library code: :mod:`zeroloss.nets.du`.
"""
