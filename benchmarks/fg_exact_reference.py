"""What a ``forward_gradient`` parameter file would reach with the exact gradient of the same
objective: the noise-free ceiling of the rule on its network.

For a feed-forward network of ``additive`` neurons the free fixed point is explicit,
:math:`s_l = r_l\\,(\\sum_p W_p\\,\\rho(s_\\mathrm{src}) + b_l)`, so the objective the rule
estimates can be differentiated exactly (JAX):

- ``global``: the network's output cost :math:`C(s_o, d)` (``learning.cost``) through the whole network;
- ``local_greedy``: every block's own loss for the parameters into it, the upstream states held
  fixed (a hidden block's readout loss, grouped or not; the output cost for the output), and the
  readouts' delta rule.

Everything else is the run's: network, initial weights and readouts (same seed, drawn by the
same trainer), optimizer and per-projection rates, batch order source, epochs. Adam is
invariant to the scale of the gradient, so the rule's time-constant factor (docs) does not
matter for the comparison.

    HEBBSIM_DATA=../shared/data python benchmarks/fg_exact_reference.py examples/mnist_forward_gradient.toml \\
        --set learning.epochs=10
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from hebbsim.data.datasets import load_dataset
from hebbsim.data.params import load_params
from hebbsim.dynamics import forward_gradient as fg
from hebbsim.dynamics import rhs
from hebbsim.dynamics.loss import cost, one_hot
from hebbsim.dynamics.network import OUTPUT
from hebbsim.dynamics.params import init_params
from hebbsim.simulate.engines import engine_from_params
from hebbsim.simulate.trainer import Trainer


def fixed_point(net, params, x, greedy: bool):
    """The free fixed point of a feed-forward additive network (one pass per layer; with
    ``clip_states`` the clip of the unclipped one, where the projected Euler map rests); with
    ``greedy`` every population sees its sources' states as constants."""
    states = {p.name: jnp.zeros((x.shape[0], p.size), x.dtype) for p in net.dynamic_populations}
    for _ in net.dynamic_populations:  # depth passes make a feed-forward chain exact
        held = {k: jax.lax.stop_gradient(v) for k, v in states.items()} if greedy else states
        cur = rhs.synaptic_currents(net, params, held, x)
        states = rhs.project(net, {p.name: p.leak * cur[p.name] for p in net.dynamic_populations})
    return states


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("params")
    ap.add_argument("--set", action="append", default=[], dest="overrides")
    args = ap.parse_args()
    cfg = load_params(args.params, args.overrides)
    net = cfg.build_network()
    if net.neuron != "additive" or cfg.network.topology != "feedforward":
        raise SystemExit("needs a feed-forward network of additive neurons (explicit fixed point)")
    jax.config.update("jax_enable_x64", cfg.dynamics.dtype == "float64")
    data = load_dataset(cfg.data.dataset, root=cfg.data.root)
    x_train, y_train = data.x_train.astype(cfg.dynamics.dtype), data.y_train
    x_test, y_test = data.x_test.astype(cfg.dynamics.dtype), data.y_test
    rng = np.random.default_rng(cfg.learning.seed)
    params = init_params(net, rng, np.dtype(cfg.dynamics.dtype))
    trainer = Trainer(cfg, net, engine_from_params(cfg, net), params, len(x_train), rng)  # same readouts
    opt, mode = trainer.optimizer, cfg.learning.forward_gradient.mode
    greedy = mode == "local_greedy"
    readout_pops = [k[len("readout_W_"):] for k in trainer.state.learned if k.startswith("readout_W_")]

    def loss(flat, x, d):
        p = params.with_trainable(net, flat)
        s = fixed_point(net, p, x, greedy)
        rates = rhs.rates(net, s, x)
        total = cost(net, s[OUTPUT], d).mean()
        for pop in readout_pops:
            ro = (flat[f"readout_W_{pop}"], flat[f"readout_b_{pop}"])
            total = total + fg.local_loss(rates[pop], ro, d).mean()
        return total

    @jax.jit
    def step(flat, state, x, d):
        return opt.update(flat, state, jax.grad(loss)(flat, x, d))

    @jax.jit
    def test_error(flat, x, y):
        s = fixed_point(net, params.with_trainable(net, flat), x, False)
        return jnp.mean(jnp.argmax(rhs.rates(net, s, x)[OUTPUT], axis=-1) != y)

    flat = jax.tree.map(jnp.asarray, trainer._flat())
    state = jax.tree.map(jnp.asarray, opt.init(trainer._flat()))
    bs = cfg.learning.batch_size
    n_cls = net.sizes[OUTPUT]
    print(f"exact {mode} gradient, {net.sizes}, {cfg.learning.optimizer}, rates {opt.lrs}")
    for epoch in range(1, cfg.learning.epochs + 1):
        t0 = time.perf_counter()
        order = rng.permutation(len(x_train))
        for start in range(0, len(order) - bs + 1, bs):
            idx = order[start:start + bs]
            flat, state = step(flat, state, x_train[idx], one_hot(y_train[idx], n_cls, x_train.dtype))
        err = float(test_error(flat, x_test, y_test))
        train = float(test_error(flat, x_train[:10000], y_train[:10000]))
        print(f"epoch {epoch:3d}  test error {100 * err:5.2f}%  train error (10k) {100 * train:5.2f}%  "
              f"({time.perf_counter() - t0:.1f} s)", flush=True)


if __name__ == "__main__":
    main()
