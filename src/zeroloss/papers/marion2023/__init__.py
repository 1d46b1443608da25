"""Marion & Berthier (NeurIPS 2023): two-timescale SGD on a shallow univariate net (docs/theory.md §3).

- :mod:`~zeroloss.papers.marion2023.twotimescale`: the univariate lab — targets, the model, the exact risk, online
  SGD, the ε → 0 limit, full-batch GD with two optimisers (also reachable as ``zeroloss.twotimescale``).
- :mod:`~zeroloss.papers.marion2023.claims`, :mod:`~zeroloss.papers.marion2023.plots`,
  :mod:`~zeroloss.papers.marion2023.experiments`: what is checked, drawn and registered.
"""
