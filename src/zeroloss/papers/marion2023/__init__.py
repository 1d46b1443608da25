"""Marion & Berthier (NeurIPS 2023): two-timescale SGD on a shallow univariate net (docs/theory.md §3).

- :mod:`~zeroloss.papers.marion2023.twotimescale`: the univariate lab — targets, the model, the exact risk, online
  SGD, the ε → 0 limit, full-batch GD with two optimisers (also reachable as ``zeroloss.twotimescale``).
- :mod:`~zeroloss.papers.marion2023.runs`: the runs (online SGD with its limit and population twin, appendix GD);
  everything a stored result depends on.
- :mod:`~zeroloss.papers.marion2023.claims` (regimes, mechanism, neuron counts, official run, ε sweep),
  :mod:`~zeroloss.papers.marion2023.claims_appendix`, :mod:`~zeroloss.papers.marion2023.claims_scaling`,
  :mod:`~zeroloss.papers.marion2023.plots`, :mod:`~zeroloss.papers.marion2023.experiments`: what is checked, drawn
  and registered.
"""
