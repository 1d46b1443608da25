"""Theory-exact, ensemble-native networks (a leading members dimension S on every parameter).

- :class:`FullyConnected`, :class:`ResNet`, :class:`ConvResNet`: Du et al. (MATH §1.2).
- :class:`FeedForward`: Chatterjee's net with biases and per-layer widths (MATH §2.2).
- :class:`EnsembleNet` and :class:`LinearMap`: the interface :func:`zeroloss.gram` and :func:`zeroloss.train_gd`
  rely on.
"""

from zeroloss.nets.base import EnsembleNet, LinearMap
from zeroloss.nets.du import ConvResNet, FullyConnected, ResNet, patches
from zeroloss.nets.feedforward import FeedForward

__all__ = ["ConvResNet", "EnsembleNet", "FeedForward", "FullyConnected", "LinearMap", "ResNet", "patches"]
