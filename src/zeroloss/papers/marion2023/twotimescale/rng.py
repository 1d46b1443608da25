"""A tiny counter-free random generator for compiled loops: xoshiro256** seeded by splitmix64 (numba).

The online SGD of :mod:`zeroloss.papers.marion2023.twotimescale.sgd` draws two uniforms per step inside a numba
loop, for every member side by side. Each member owns a 4-word xoshiro256** state seeded from ``seed + k`` by
splitmix64, so member k of a run seeded s is exactly the single-member run seeded s + k, whatever the number of threads.

References:
    Blackman & Vigna, "Scrambled linear pseudorandom number generators", ACM TOMS 2021 (xoshiro256**, splitmix64).

Examples:
    >>> s = seed_states(7, 2)
    >>> s.shape, s.dtype.name
    ((2, 4), 'uint64')
    >>> 0.0 <= next_uniform(s[0]) < 1.0
    True
"""

from __future__ import annotations

import numba as nb
import numpy as np

_M64 = (1 << 64) - 1


def _splitmix64(x: int) -> tuple[int, int]:
    """One splitmix64 step on a Python int: (new state, output)."""
    x = (x + 0x9E3779B97F4A7C15) & _M64
    z = x
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return x, z ^ (z >> 31)


def seed_states(seed: int, members: int) -> np.ndarray:
    """(members, 4) uint64 xoshiro256** states; row k seeded from ``seed + k`` through splitmix64."""
    states = np.empty((members, 4), dtype=np.uint64)
    for k in range(members):
        x = (int(seed) + k) & _M64
        for i in range(4):
            x, out = _splitmix64(x)
            states[k, i] = out
    return states


@nb.njit(inline="always", cache=True)
def _rotl(x, k):
    return (x << np.uint64(k)) | (x >> np.uint64(64 - k))


@nb.njit(inline="always", cache=True)
def next_uniform(s):
    """Advance state ``s`` (4 uint64, in place) and return a float64 uniform in [0, 1) (top 53 bits)."""
    result = _rotl(s[1] * np.uint64(5), 7) * np.uint64(9)
    t = s[1] << np.uint64(17)
    s[2] ^= s[0]
    s[3] ^= s[1]
    s[1] ^= s[2]
    s[0] ^= s[3]
    s[2] ^= t
    s[3] = _rotl(s[3], 45)
    return np.float64(result >> np.uint64(11)) * (1.0 / 9007199254740992.0)
