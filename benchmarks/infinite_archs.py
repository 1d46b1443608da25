"""Architectures compared with Neural Tangents' ``stax``, written once as plain data for both sides.

Imported by ``benchmarks/bench_infinite_nt.py`` (zeroloss, PyTorch) and ``benchmarks/bench_infinite_nt_side.py``
(Neural Tangents 0.6.5, run in its own virtual environment): no imports here. A layer is a tuple:

    ("dense", out)                      nn.Linear / stax.Dense
    ("conv", out, k, stride, padding)   nn.Conv2d / stax.Conv, padding "same" (symmetric: odd inputs when
                                        strided) or "valid"; "same_right" = JAX's SAME for an even input and
                                        stride 2 (one more zero on the right/bottom): nn.ZeroPad2d + a valid conv
    ("act", name[, arg])                relu, erf, gelu, leaky_relu(α), tanh (stax.ElementwiseNumerical)
    ("flatten",) ("gap",) ("avgpool", k) ("layernorm",)
    ("residual", [layers])              x + branch(x): stax.FanOut(2) → parallel(Identity, branch) → FanInSum

Every linear layer has W ∼ N(0, W_STD²/fan_in), b ∼ N(0, B_STD²) (NT's "standard" parameterisation).
"""

W_STD = 1.3
B_STD = 0.2
#: quadrature degree of NT's ElementwiseNumerical (tanh), and the tolerance its error allows.
NT_NUMERICAL_DEGREE = 64

ARCHS = {
    "fc_relu": ((6,), [("dense", 32), ("act", "relu"), ("dense", 1)]),
    "fc_erf": ((6,), [("dense", 32), ("act", "erf"), ("dense", 1)]),
    "fc_gelu": ((6,), [("dense", 32), ("act", "gelu"), ("dense", 1)]),
    "fc_leaky_relu": ((6,), [("dense", 32), ("act", "leaky_relu", 0.1), ("dense", 1)]),
    "fc_tanh": ((6,), [("dense", 32), ("act", "tanh"), ("dense", 1)]),
    "fc_deep_relu_erf": ((6,), [("dense", 32), ("act", "relu"), ("dense", 32), ("act", "erf"), ("dense", 1)]),
    "fc_layernorm": ((6,), [("dense", 32), ("layernorm",), ("act", "relu"), ("dense", 1)]),
    "cnn_flatten": ((5, 5, 2), [("conv", 8, 3, 1, "same"), ("act", "relu"), ("conv", 8, 3, 1, "valid"),
                                ("act", "erf"), ("flatten",), ("dense", 1)]),
    "cnn_gap": ((5, 5, 2), [("conv", 8, 3, 1, "same"), ("act", "relu"), ("conv", 8, 3, 1, "same"),
                            ("act", "gelu"), ("gap",), ("dense", 1)]),
    "cnn_strided": ((7, 7, 2), [("conv", 8, 3, 2, "same"), ("act", "relu"), ("conv", 8, 3, 2, "same_right"),
                                ("act", "relu"), ("gap",), ("dense", 1)]),
    "cnn_residual": ((5, 5, 2), [("conv", 8, 3, 1, "same"),
                                 ("residual", [("act", "relu"), ("conv", 8, 3, 1, "same"), ("act", "relu"),
                                               ("conv", 8, 3, 1, "same")]),
                                 ("act", "relu"), ("gap",), ("dense", 1)]),
    "cnn_avgpool": ((6, 6, 2), [("conv", 8, 3, 1, "same"), ("act", "relu"), ("avgpool", 2), ("flatten",),
                                ("dense", 1)]),
    "anchor_cnn": ((8, 8, 3), [("conv", 64, 3, 1, "same"), ("act", "relu"), ("conv", 64, 3, 1, "same"),
                               ("act", "relu"), ("conv", 64, 3, 2, "same_right"), ("act", "relu"), ("gap",),
                               ("dense", 1)]),
    "anchor_fc": ((64,), [("dense", 512), ("act", "relu"), ("dense", 512), ("act", "erf"), ("dense", 1)]),
}
#: The two anchors of issue 21 and their sizes (n inputs) for the timing.
ANCHORS = {"anchor_fc": 2000, "anchor_cnn": 64}


def inputs(name, n, seed=0):
    """Deterministic inputs without numpy's RNG differences across versions: a fixed LCG, (n, *shape) NHWC/flat,
    as nested lists (both sides convert)."""
    shape = ARCHS[name][0]
    size = n
    for s in shape:
        size *= s
    state = (seed * 6364136223846793005 + 1442695040888963407) % 2**64
    values = []
    for _ in range(size):
        state = (state * 6364136223846793005 + 1442695040888963407) % 2**64
        values.append((state >> 11) / 2**53 * 2.0 - 1.0)
    return values, (n, *shape)
