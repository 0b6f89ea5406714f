"""F³ (seed 001): each sample's hidden update uses exactly what the same sample stored one epoch
earlier; the buffer survives a checkpoint; both engines agree."""

import numpy as np
import pytest

import hebbsim
from hebbsim.data.datasets import load_dataset
from hebbsim.data.params import ParameterError, load_params
from hebbsim.dynamics.loss import one_hot
from hebbsim.dynamics.params import init_params
from hebbsim.simulate.engines import make_engine
from hebbsim.simulate.trainer import make_trainer


def f3_params(information="error", **dynamics):
    return {"network": {"layers": [64, 9, 10], "rho": "tanh", "feedback": {"init": "kaiming_uniform"}},
            "dynamics": {"dtype": "float64", "dt": 0.25, "free_steps": 400, "nudge_steps": 400, "beta": 1e-7,
                         **dynamics},
            "learning": {"rule": "f3", "f3": {"information": information}, "lr": 0.1, "batch_size": 3,
                         "epochs": 2, "seed": 5},
            "data": {"dataset": "digits", "train_subset": 6, "test_subset": 5}}


class Spy:
    """Wraps a rule's batch: what went in and came out, in call order."""

    def __init__(self, rule):
        self.calls, self._batch = [], rule.batch
        rule.batch = self

    def __call__(self, system, params, state, x, target, init, draws, mask=None):
        result = self._batch(system, params, state, x, target, init, draws, mask)
        self.calls.append({"x": np.array(x), "rows": np.array(draws["buffer/delayed"]), "params": params,
                           "stored": np.array(result.buffers["delayed"]), "grads": result.grads,
                           "free": result.free.states})
        return result


@pytest.mark.parametrize("information", ["error", "softmax"])
def test_a_samples_hidden_update_uses_what_it_stored_one_epoch_earlier(information):
    cfg = load_params(f3_params(information))
    net = cfg.build_network()
    data = load_dataset("digits")
    x, y = data.x_train[:6].astype(np.float64), data.y_train[:6]
    rng = np.random.default_rng(cfg.learning.seed)
    params = init_params(net, rng, np.float64)
    trainer = make_trainer(cfg, net, make_engine("numba", net, cfg.dynamics.dt, "float64"), params, 6, rng)
    spy = Spy(trainer.rule)
    orders, held = [], None
    for epoch in (1, 2):
        twin = np.random.Generator(type(rng.bit_generator)())
        twin.bit_generator.state = rng.bit_generator.state
        orders.append(twin.permutation(6))  # the order train_epoch draws first
        trainer.train_epoch(x, y, progress=False, epoch=epoch)
        held = held if epoch == 2 else trainer.buffers["delayed"].copy()
    first, second = spy.calls[:2], spy.calls[2:]
    stored = np.zeros((6, 10))
    for call, idx in zip(first, np.split(orders[0], 2)):
        assert not call["rows"].any()  # epoch 1: nothing stored yet, the hidden layer learns nothing
        assert np.abs(call["grads"]["W_x_to_h1"]).max() < 1e-9
        np.testing.assert_array_equal(call["x"], x[idx])
        stored[idx] = call["stored"]
    np.testing.assert_array_equal(held, stored)  # the buffer after epoch 1: each sample's own row
    B = params.weights["o_to_h1"]
    for call, idx in zip(second, np.split(orders[1], 2)):
        np.testing.assert_array_equal(call["rows"], stored[idx])  # exactly what these samples stored
        s_h = call["free"]["h1"]
        hand = ((1 - np.tanh(s_h) ** 2) * (stored[idx] @ B.T)).T @ x[idx] / 3  # seed 001: (B u ⊙ f'(a)) xᵀ
        np.testing.assert_allclose(call["grads"]["W_x_to_h1"], hand, rtol=1e-4, atol=1e-12)
        d = one_hot(y[idx], 10, np.float64)
        e = call["free"]["o"] - d if information == "error" else (
            np.exp(call["free"]["o"]) / np.exp(call["free"]["o"]).sum(1, keepdims=True) - d)
        np.testing.assert_allclose(call["stored"], e, atol=1e-12)


def test_the_buffer_is_checkpointed_so_a_resumed_run_is_bit_identical(tmp_path, assert_same_run):
    p = f3_params(free_steps=40, nudge_steps=20)
    p["learning"]["epochs"] = 3
    full = {**p, "record": {"path": str(tmp_path / "full.h5"), "probes": 3, "weights_every": 1}}
    part = {**p, "record": {"path": str(tmp_path / "part.h5"), "probes": 3, "weights_every": 1}}
    hebbsim.run(full, progress=False, log=None)
    hebbsim.run(part, ["learning.epochs=2"], progress=False, log=None)
    from hebbsim.data.checkpoint import checkpoint_path, load_checkpoint

    arrays, _ = load_checkpoint(checkpoint_path(part["record"]["path"]))
    assert arrays["buffer/delayed"].shape == (6, 10) and arrays["buffer/delayed"].any()
    hebbsim.run(part, ["learning.epochs=3"], resume=True, progress=False, log=None)
    assert_same_run(full["record"]["path"], part["record"]["path"])


def test_f3_refuses_routes_that_do_not_come_from_the_output():
    with pytest.raises(ParameterError, match="from the output only"):
        load_params({"network": {"layers": [64, 9, 8, 10], "topology": "mixed_feedback"},
                     "learning": {"rule": "f3"}})
    with pytest.raises(ParameterError, match="information = 'gradient'"):
        load_params({"network": {"layers": [64, 9, 10]}, "learning": {"rule": "f3", "f3": {"information": "gradient"}}})


@pytest.mark.slow
def test_numba_and_jax_train_the_same_weights_with_the_buffer(tmp_path):
    runs = {}
    for engine in ("numba", "jax"):
        p = f3_params(free_steps=40, nudge_steps=20, engine=engine, beta=0.01)
        p["learning"].update(epochs=2, batch_size=4)
        p["data"].update(train_subset=10)
        runs[engine] = hebbsim.run({**p, "record": {"path": str(tmp_path / f"{engine}.h5"), "probes": 3}},
                                   progress=False, log=None)
    for name in runs["numba"].data_vars:
        if name.startswith("weight_"):
            np.testing.assert_allclose(runs["jax"][name].values, runs["numba"][name].values, atol=1e-10, rtol=0)
