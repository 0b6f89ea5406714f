r"""Loop alignment (docs/model.md, Reference gradients and alignment): does the rest of a cycle carry a useful learning signal to a projection?

For a learned projection :math:`M` (``src → dst``) on a directed cycle, the *loop map* is the
product of the other projections on the cycle, in the order a signal takes them from ``dst``
back to ``src``: for the cycle h1 → h2 → o → h1 and :math:`M = W_{o\leftarrow h2}` it is
:math:`W_{h2\leftarrow h1} W_{h1\leftarrow o}`, which has the shape of :math:`M^\top`. The loop
alignment is the angle between :math:`M^\top` and the loop map,

.. math:: \angle(A, B) = \arccos \frac{\langle A, B\rangle_F}{\lVert A\rVert_F \lVert B\rVert_F}

in degrees; below 90° the loop delivers a useful signal to :math:`M` (seed 000, Fig. 4).
Where several cycles pass through :math:`M`, the shortest path back (fewest projections) is
used; ties go to the projection listed first.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from ..dynamics.network import INPUT, Network, Projection
from ..dynamics.params import Params


def loop_paths(net: Network) -> dict[str, tuple[Projection, ...]]:
    """For every learned projection on a directed cycle: the shortest chain of the other
    projections leading from its destination back to its source, in the order taken."""
    paths = {}
    for m in net.learned:
        if m.src == INPUT:
            continue
        # breadth-first search from m.dst to m.src over every projection except m
        came_from: dict[str, tuple[str, Projection] | None] = {m.dst: None}
        queue = deque([m.dst])
        while queue and m.src not in came_from:
            here = queue.popleft()
            for p in net.projections:
                if p.src == here and p is not m and p.dst not in came_from:
                    came_from[p.dst] = (here, p)
                    queue.append(p.dst)
        if m.src not in came_from:
            continue
        chain, node = [], m.src
        while came_from[node] is not None:
            node, p = came_from[node]
            chain.append(p)
        paths[m.name] = tuple(reversed(chain))
    return paths


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two arrays in the Frobenius inner product (NaN if one is 0)."""
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    norm = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a @ b / norm) if norm else float("nan")


def angle(a: np.ndarray, b: np.ndarray) -> float:
    """The angle between two arrays in the Frobenius inner product, in degrees (NaN if one is 0)."""
    return float(np.degrees(np.arccos(np.clip(cosine(a, b), -1.0, 1.0))))


def loop_alignment(net: Network, params: Params, paths: dict[str, tuple[Projection, ...]] | None = None
                   ) -> dict[str, float]:
    """The loop alignment (degrees) of every learned projection on a directed cycle."""
    paths = loop_paths(net) if paths is None else paths
    out = {}
    for name, chain in paths.items():
        loop_map = np.asarray(params.weight(chain[0]), np.float64)
        for p in chain[1:]:
            loop_map = np.asarray(params.weight(p), np.float64) @ loop_map
        out[name] = angle(params.weights[name].T, loop_map)
    return out
