r"""Integrate-and-fire neurons in discrete time (seed 000 §VI), with a surrogate spike derivative.

A layer of IF neurons receives the current :math:`I_t` at every time step :math:`t = 1 … T` and
integrates it without leak,

.. math::  v_t = \tilde v_{t-1} + I_t, \qquad z_t = H(v_t - \theta), \qquad
           \tilde v_t = \begin{cases} v_t\,(1 - z_t) & \text{reset to zero} \\
                                      v_t - \theta z_t & \text{reset by subtraction} \end{cases}

(:math:`\tilde v_0 = 0`, :math:`H` the Heaviside step, :math:`\theta` the threshold;
:math:`v_t` is the voltage before the reset). The step has no useful derivative; two ways of
learning through it (both from the paper):

- ``surrogate``: :math:`\partial z/\partial v` is replaced by the fast-sigmoid surrogate
  :math:`1/(1 + k|v - \theta|)^2` (Zenke & Ganguli 2018), and the layer is read by its firing
  rate :math:`\bar z = \frac1T\sum_t z_t`;
- ``voltage``: no derivative of the spike at all (:math:`z_t` enters as a constant); the layer
  is read by its mean voltage :math:`\bar v = \frac1T\sum_t v_t`, which depends on the weights
  through the currents alone.

In both the reset is a constant for differentiation (the usual "detached reset"): the gradient
of the readout reaches :math:`I_t` only through the voltages it raised. Array functions of JAX
arrays (``jax.numpy``); imported only where a spiking network runs.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

RESETS = ("zero", "subtract")
GRADIENTS = ("surrogate", "voltage")


def spike_fn(slope: float):
    """The Heaviside step :math:`H(u)` (1.0 where :math:`u > 0`) whose derivative is the
    fast-sigmoid surrogate :math:`1/(1 + k|u|)^2` with :math:`k` = ``slope``."""

    @jax.custom_jvp
    def spike(u):
        return (u > 0).astype(u.dtype)

    @spike.defjvp
    def _spike_jvp(primals, tangents):
        (u,), (du,) = primals, tangents
        return spike(u), du / (1.0 + slope * jnp.abs(u)) ** 2

    return spike


def integrate_and_fire(currents, threshold: float, reset: str = "zero", gradient: str = "surrogate",
                       slope: float = 5.0):
    """Run IF neurons on ``currents`` of shape ``(T, batch, units)`` (module docstring).

    Returns ``(spikes, voltages)``, both ``(T, batch, units)``: :math:`z_t` and the voltage
    :math:`v_t` before the reset. With ``gradient = "voltage"`` the spikes carry no derivative."""
    if reset not in RESETS:
        raise ValueError(f"reset = {reset!r} is not allowed; use one of {', '.join(RESETS)}")
    if gradient not in GRADIENTS:
        raise ValueError(f"gradient = {gradient!r} is not allowed; use one of {', '.join(GRADIENTS)}")
    spike = spike_fn(slope)

    def step(v_prev, current):
        v = v_prev + current
        z = spike(v - threshold)
        if gradient == "voltage":
            z = jax.lax.stop_gradient(z)
        zc = jax.lax.stop_gradient(z)  # detached reset
        v_next = v * (1.0 - zc) if reset == "zero" else v - threshold * zc
        return v_next, (z, v)

    v0 = jnp.zeros(currents.shape[1:], currents.dtype)
    _, (spikes, voltages) = jax.lax.scan(step, v0, currents)
    return spikes, voltages
