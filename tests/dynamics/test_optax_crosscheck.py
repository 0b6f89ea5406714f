"""hebbsim's own optimizers (:mod:`hebbsim.dynamics.optimizers`, the ones the trainer uses) are
step for step optax's counterparts on the same gradients (float64), so the discrete references
(and every rule) are trained by the textbook arithmetic: SGD, SGD with momentum (heavy ball,
``optax.trace``), L2 weight decay added to the gradient of the weights, Adam and AdamW's
decoupled weight decay — per-array learning rates and the schedule's factor included."""

import jax
import numpy as np
import optax
import pytest

from hebbsim.dynamics.optimizers import Optimizer


@pytest.fixture(autouse=True)
def _x64():
    jax.config.update("jax_enable_x64", True)


RATES = {"W_x_to_h1": 0.03, "W_h1_to_o": 0.01, "b_h1": 0.02, "b_o": 0.05}
SHAPES = {"W_x_to_h1": (5, 4), "W_h1_to_o": (3, 5), "b_h1": (5,), "b_o": (3,)}


def _optax(kind: str, momentum: float, decay: float, scale: float) -> optax.GradientTransformation:
    """optax's optimizer of each array (its rate × the schedule's factor; decay on weights only)."""
    def one(name):
        lr, wd = RATES[name] * scale, decay if name.startswith("W_") else 0.0
        if kind == "adam":
            return optax.adamw(lr, b1=0.9, b2=0.999, eps=1e-8, weight_decay=wd)
        return optax.chain(optax.add_decayed_weights(wd), optax.sgd(lr, momentum=momentum or None))
    return optax.multi_transform({name: one(name) for name in RATES}, {name: name for name in RATES})


@pytest.mark.parametrize("kind,momentum,decay,scale", [
    ("sgd", 0.0, 0.0, 1.0), ("sgd", 0.9, 0.0, 1.0), ("sgd", 0.0, 0.01, 1.0), ("sgd", 0.5, 0.02, 0.3),
    ("adam", 0.0, 0.0, 1.0), ("adam", 0.0, 0.05, 0.7)])
def test_each_optimizer_is_optax_s(kind, momentum, decay, scale):
    rng = np.random.default_rng(7)
    theta = {k: rng.normal(size=s) for k, s in SHAPES.items()}
    ours = Optimizer(RATES, kind, momentum=momentum, weight_decay=decay)
    state = ours.init(theta)
    state["lr_scale"] = np.asarray(scale)  # a schedule's factor, as Trainer.set_epoch sets it
    ref = _optax(kind, momentum, decay, scale)
    ref_params = {k: jax.numpy.asarray(v) for k, v in theta.items()}
    ref_state = ref.init(ref_params)
    mine = {k: v.copy() for k, v in theta.items()}
    for _ in range(6):
        grads = {k: rng.normal(size=s) for k, s in SHAPES.items()}
        mine, state = ours.update(mine, state, grads)
        upd, ref_state = ref.update({k: jax.numpy.asarray(v) for k, v in grads.items()}, ref_state, ref_params)
        ref_params = optax.apply_updates(ref_params, upd)
    for k in theta:
        assert np.max(np.abs(theta[k] - mine[k])) > 1e-3, k  # they did move
        np.testing.assert_allclose(mine[k], np.asarray(ref_params[k]), rtol=1e-12, atol=1e-14, err_msg=k)
