"""Chatterjee (2022): a local Polyak–Łojasiewicz criterion and the positive initialisation (docs/theory.md §2).

- :mod:`~zeroloss.papers.chatterjee2022.bounds`: the first-layer bound on α and the assumptions it needs.
- :mod:`~zeroloss.papers.chatterjee2022.init`: the initialisation laws of a FeedForward net, Chatterjee's
  ``positive`` one among them.
- :mod:`~zeroloss.papers.chatterjee2022.theory`: the certificate, the trajectory check, the criterion's probability
  over random initialisations.
- :mod:`~zeroloss.papers.chatterjee2022.search`: the best-step search of every initialisation.
- :mod:`~zeroloss.papers.chatterjee2022.reduction`: the least-squares problem the positive init reduces to without
  hidden biases (docs/theory.md §2.5).
- :mod:`~zeroloss.papers.chatterjee2022.runs`, :mod:`~zeroloss.papers.chatterjee2022.probability_runs`: the runs
  (their code sets the stored runs' result versions).
- :mod:`~zeroloss.papers.chatterjee2022.claims`, :mod:`~zeroloss.papers.chatterjee2022.conditioning`,
  :mod:`~zeroloss.papers.chatterjee2022.probability_claims`, :mod:`~zeroloss.papers.chatterjee2022.plots`,
  :mod:`~zeroloss.papers.chatterjee2022.experiments`: what is checked, drawn and registered.

The net (:class:`zeroloss.nets.FeedForward`) and the α/β estimates of any objective (:mod:`zeroloss.pl_estimates`)
are library code.
"""
