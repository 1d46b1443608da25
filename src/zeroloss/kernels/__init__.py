"""Gram matrices: finite-width (:mod:`empirical`, :mod:`jacobian`) and infinite-width (:mod:`limit`)."""
