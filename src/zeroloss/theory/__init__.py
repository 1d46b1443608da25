"""The theorems' predictions, one module per paper: what each theorem says a run should show, as functions.

``du2019`` — Du et al. (ICML 2019): contraction bound, largest stable step, width and step scalings.
"""
