"""Theory-exact, ensemble-native networks (a leading members dimension S on every parameter).

- :class:`FullyConnected`, :class:`ResNet`, :class:`ConvResNet`: Du et al. (docs/theory.md §1.2).
- :class:`FeedForward`: Chatterjee's net with biases and per-layer widths (docs/theory.md §2.2).
- :data:`NETS` and :func:`build_net`: the one registry of nets by name and the one factory; :func:`architecture`
  reads a net's architecture back (what :func:`zeroloss.limit_kernel` takes from a net object).
- :class:`EnsembleNet` and :class:`LinearMap`: the interface :func:`zeroloss.gram` and :func:`zeroloss.train_gd`
  rely on.

Examples:
    >>> from zeroloss.nets import NETS, build_net
    >>> sorted(NETS)
    ['conv-resnet', 'fc', 'feedforward', 'resnet']
    >>> build_net("fc", input_shape=(4,), width=16, depth=2, members=3).members
    3
"""

from zeroloss.nets.base import EnsembleNet, LinearMap
from zeroloss.nets.du import ConvResNet, FullyConnected, ResNet, patches
from zeroloss.nets.feedforward import FeedForward
from zeroloss.nets.registry import NET_FIELDS, NETS, architecture, build_net, net_options

__all__ = ["NETS", "NET_FIELDS", "ConvResNet", "EnsembleNet", "FeedForward", "FullyConnected", "LinearMap", "ResNet",
           "architecture", "build_net", "net_options", "patches"]
