"""Integration engines. ``make_engine(name, net, dt, dtype)`` picks one by name."""

from __future__ import annotations

from ...dynamics.noise import NoiseModel
from .base import ClampedSystem, Engine, Relaxation

ENGINES = ("numba", "jax", "reference")  # reference: feed-forward passes of the discrete rules


def make_engine(name: str, net, dt: float, dtype="float32", noise=None, **options) -> Engine:
    """``noise``: the :class:`hebbsim.dynamics.noise.NoiseModel` that phases' noise draws drive
    (``None``: noise-free dynamics only)."""
    if name == "numba":
        from .numba_engine import NumbaEngine

        return NumbaEngine(net, dt, dtype, noise=noise)
    if name == "jax":
        from .jax_engine import JaxEngine

        return JaxEngine(net, dt, dtype, noise=noise, **options)
    if name == "reference":
        from .reference_engine import ReferenceEngine

        return ReferenceEngine(net, dt, dtype)
    raise ValueError(f"engine = {name!r} is not allowed; use one of {', '.join(ENGINES)}")


def engine_from_params(cfg, net) -> Engine:
    """The engine a validated parameter file (:class:`hebbsim.data.params.RunParams`) asks for."""
    dyn = cfg.dynamics
    options = {}
    if dyn.engine == "jax":
        options = dict(solver=dyn.solver, rtol=dyn.rtol, atol=dyn.atol)
    noise = NoiseModel.from_config(dyn.noise, net.hidden)
    return make_engine(dyn.engine, net, dyn.dt, dyn.dtype, noise=noise, **options)


__all__ = ["ClampedSystem", "Engine", "Relaxation", "make_engine", "engine_from_params", "ENGINES"]
