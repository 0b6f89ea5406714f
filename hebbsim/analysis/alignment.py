r"""Loop alignment (docs/model.md, Reference gradients and alignment): does the rest of a cycle carry a useful learning signal to a projection?

For a learned projection :math:`M` (``src → dst``) on a directed cycle, the *loop map* is the
product of the other projections on the cycle, in the order a signal takes them from ``dst``
back to ``src``: for the cycle h1 → h2 → o → h1 and :math:`M = W_{o\leftarrow h2}` it is
:math:`W_{h2\leftarrow h1} W_{h1\leftarrow o}`, which has the shape of :math:`M^\top`. The loop
alignment is the angle between :math:`M^\top` and the loop map,

.. math:: \angle(A, B) = \arccos \frac{\langle A, B\rangle_F}{\lVert A\rVert_F \lVert B\rVert_F}

in degrees; below 90° the loop delivers a useful signal to :math:`M` (seed 000, Fig. 4).
:func:`feedback_alignment` is the same angle seen from a fixed feedback matrix.
Where several cycles pass through :math:`M`, the shortest path back (fewest projections) is
used; ties go to the projection listed first.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from ..dynamics.network import INPUT, Network, Projection
from ..dynamics.params import Params


def _shortest_chain(net: Network, start: str, goal: str, allowed) -> tuple[Projection, ...] | None:
    """The shortest chain of ``allowed`` projections leading from ``start`` to ``goal``, in the
    order taken (breadth-first; ties go to the projection listed first), or ``None``."""
    came_from: dict[str, tuple[str, Projection] | None] = {start: None}
    queue = deque([start])
    while queue and goal not in came_from:
        here = queue.popleft()
        for p in net.projections:
            if p.src == here and allowed(p) and p.dst not in came_from:
                came_from[p.dst] = (here, p)
                queue.append(p.dst)
    if goal not in came_from:
        return None
    chain, node = [], goal
    while came_from[node] is not None:
        node, p = came_from[node]
        chain.append(p)
    return tuple(reversed(chain))


def loop_paths(net: Network) -> dict[str, tuple[Projection, ...]]:
    """For every learned projection on a directed cycle: the shortest chain of the other
    projections leading from its destination back to its source, in the order taken."""
    paths = {}
    for m in net.learned:
        if m.src == INPUT:
            continue
        chain = _shortest_chain(net, m.dst, m.src, lambda p, m=m: p is not m)
        if chain:
            paths[m.name] = chain
    return paths


def feedback_paths(net: Network) -> dict[str, tuple[Projection, ...]]:
    """For every fixed projection :math:`B` (``src → dst``) that feeds back along the learned
    forward path: the shortest chain of learned projections from its ``dst`` to its ``src``."""
    paths = {}
    for b in net.projections:
        if b.kind != "fixed":
            continue
        chain = _shortest_chain(net, b.dst, b.src, lambda p: p.kind == "learned")
        if chain:
            paths[b.name] = chain
    return paths


def _composed(params: Params, chain) -> np.ndarray:
    """The linear map of a chain of projections, first one applied first."""
    out = np.asarray(params.weight(chain[0]), np.float64)
    for p in chain[1:]:
        out = np.asarray(params.weight(p), np.float64) @ out
    return out


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
    return {name: angle(params.weights[name].T, _composed(params, chain)) for name, chain in paths.items()}


def feedback_alignment(net: Network, params: Params, paths: dict[str, tuple[Projection, ...]] | None = None
                       ) -> dict[str, float]:
    r"""Feedback alignment's signature (Lillicrap et al. 2016): for every fixed feedback matrix
    :math:`B` (``src → dst``), the angle (degrees) between :math:`B^\top` and the forward map
    from ``dst`` back to ``src`` — :math:`W_{i+1}` for FA's :math:`B_i`, :math:`W_o W_L \cdots
    W_{i+1}` for DFA's. It falls well below 90° as the forward weights come to align with the
    feedback."""
    paths = feedback_paths(net) if paths is None else paths
    return {name: angle(_composed(params, chain), params.weights[name].T) for name, chain in paths.items()}


def feedback_agreement(net: Network, params: Params, paths: dict[str, tuple[Projection, ...]] | None = None
                       ) -> dict[str, tuple[float, float]]:
    r"""For every fixed feedback matrix :math:`B` with a forward map :math:`M` back along it
    (:func:`feedback_paths`): ``(relative error, sign congruence)`` — :math:`\lVert B^\top -
    M\rVert_F / \lVert M\rVert_F` and the fraction of entries where :math:`B^\top` and :math:`M`
    have the same sign (seed 003 Fig. 2 A–B: node perturbation drives :math:`B^\top` to :math:`M`,
    feedback alignment only aligns it)."""
    paths = feedback_paths(net) if paths is None else paths
    out = {}
    for name, chain in paths.items():
        m, bt = _composed(params, chain), np.asarray(params.weights[name], np.float64).T
        norm = np.linalg.norm(m)
        out[name] = (float(np.linalg.norm(bt - m) / norm) if norm else float("nan"),
                     float(np.mean(np.sign(bt) == np.sign(m))))
    return out
