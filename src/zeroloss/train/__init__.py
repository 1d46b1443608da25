"""Training engines: full-batch gradient descent on ensembles (:mod:`zeroloss.train.gd`)."""
