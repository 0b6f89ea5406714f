"""Integration engines. ``make_engine(name, net, dt, dtype)`` picks one by name."""

from __future__ import annotations

from .base import ClampedSystem, Engine, Relaxation

ENGINES = ("numba", "jax")


def make_engine(name: str, net, dt: float, dtype="float32", **options) -> Engine:
    if name == "numba":
        from .numba_engine import NumbaEngine

        return NumbaEngine(net, dt, dtype)
    if name == "jax":
        raise ValueError("dynamics.engine = 'jax': the jax/diffrax engine is not available yet; use 'numba'")
    raise ValueError(f"engine = {name!r} is not allowed; use one of {', '.join(ENGINES)}")


__all__ = ["ClampedSystem", "Engine", "Relaxation", "make_engine", "ENGINES"]
