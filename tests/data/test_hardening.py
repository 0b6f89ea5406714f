"""No traceback on any input: every malformed or hostile parameter set ends in ParameterError
(one line per problem, naming the key), before any work starts."""

import os
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hebbsim.data.params import ParameterError, RunParams, load_params
from hebbsim.simulate.preflight import check_memory, check_record_path, memory_estimate

BASE = {"network": {"layers": [64, 16, 10]}}


def _err(raw, overrides=None) -> str:
    with pytest.raises(ParameterError) as e:
        load_params(raw, overrides)
    return str(e.value)


@pytest.mark.parametrize("override,words", [
    ("learning.forward_gradient.perturb_time=inf", "finite"),
    ("dynamics.beta=nan", "dynamics.beta"),
    ("learning.lr=inf", "learning.lr"),
    ("learning.lr=[0.1, nan, 0.1]", "learning.lr"),
    ('learning.lr={x_to_h1 = 0.1, h1_to_o = inf, o_to_h1 = 0.1}', "learning.lr"),
    ("dynamics.rtol=-inf", "dynamics.rtol"),
    ("dynamics.tol=inf", "dynamics.tol"),
    ("learning.weight_decay=nan", "learning.weight_decay"),
    ("network.leak=inf", "network.leak"),
    ("network.feedback.scale=inf", "network.feedback.scale"),
    ("dynamics.free_steps=1000000000000", "dynamics.free_steps"),
    ("learning.epochs=18446744073709551617", "learning.epochs"),
    ("dynamics.eval_steps=18446744073709551617", "dynamics.eval_steps"),
    ("learning.seed=18446744073709551617", "learning.seed"),
    ("network.layers=[64, 10000000, 10]", "layers[1]"),
    ("network.layers=[64, 9223372036854775807, 10]", "layers[1]"),
    ("record.phases=[]", "record.phases"),
    ("record.path=''", "record.path"),
    ("record.path='.'", "record.path"),
    ('record.path="a\\u0000b"', "record.path"),
    ("network.layers=[64, 10]", "network.layers"),
])
def test_bad_values_are_refused_with_the_key(override, words):
    raw = {**BASE, "learning": {"rule": "forward_gradient"}, "network": {"layers": [64, 16, 10],
                                                                          "topology": "feedforward"}} \
        if "forward_gradient" in override else BASE
    msg = _err(raw, [override])
    assert words in msg, msg
    assert "dict[str,float]" not in msg and "list[float]" not in msg  # no pydantic internals


def test_a_self_projection_is_refused_before_any_work():
    msg = _err({"network": {"layers": [64, 16, 10], "projections": [
        {"src": "x", "dst": "h1"}, {"src": "h1", "dst": "h1"}, {"src": "h1", "dst": "o"}]}})
    assert "h1_to_h1" in msg and "itself" in msg


@pytest.mark.parametrize("override", ['learning.epochs=1\n[network]\nlayers=[1]', "learning.epochs=1, seed = 3",
                                      "learning.lr=" + "[" * 600 + "]" * 600])
def test_set_values_cannot_smuggle_in_more_toml(override):
    msg = _err(BASE, [override])  # refused as more than one value, or read as one (bad) string
    assert "--set" in msg or "learning.epochs = '1, seed = 3'" in msg, msg


@pytest.mark.parametrize("content", [b"\xff\xfe[\x00n\x00e\x00t\x00", "[network]\nlayers = [64, 16, 10]\n# \xe9".encode(
    "latin-1"), b"\x00\x01\x02\x03binary", ("x = " + "[" * 800 + "]" * 800).encode()])
def test_unreadable_parameter_files_are_one_line(tmp_path, content):
    path = tmp_path / "p.toml"
    path.write_bytes(content)
    msg = _err(path)
    assert str(path) in msg and "\n" not in msg.strip()


def test_a_directory_as_parameter_file(tmp_path):
    assert "is a directory" in _err(tmp_path)


def test_record_path_expands_home_and_a_trailing_slash_names_a_folder():
    p = load_params(BASE, ["record.path='~/hebbsim-runs/x.h5'"])
    assert p.record.path == os.path.expanduser("~/hebbsim-runs/x.h5")
    assert load_params(BASE, ["record.path='runs/sub/'"]).record.path == "runs/sub/run.h5"


def test_record_path_checked_against_the_file_system_before_a_run(tmp_path):
    def cfg(path):
        return load_params(BASE, [f"record.path='{path}'"])

    (tmp_path / "a_file").write_text("x")
    with pytest.raises(ParameterError, match="is a file, not a folder"):
        check_record_path(cfg(tmp_path / "a_file" / "run.h5"))
    with pytest.raises(ParameterError, match="is a folder"):
        check_record_path(cfg(tmp_path))
    with pytest.raises(ParameterError, match="longer than 255"):
        check_record_path(cfg(tmp_path / ("n" * 300 + ".h5")))
    params_file = tmp_path / "p.toml"
    params_file.write_text("")
    with pytest.raises(ParameterError, match="parameter file itself"):
        check_record_path(cfg(params_file), params_file)
    made = check_record_path(cfg(tmp_path / "new" / "deeper" / "run.h5"))
    assert made.parent.is_dir() and not made.exists()
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(ParameterError, match="not writable"):
            check_record_path(cfg(locked / "run.h5"))


def test_a_run_that_cannot_fit_in_memory_is_refused_with_the_estimate():
    big = load_params({"network": {"layers": [784, 1_000_000, 10]}, "data": {"dataset": "mnist"}})
    with pytest.raises(ParameterError, match=r"needs about 36.6 GiB of memory \(evaluation 22.4 GiB, parameters"):
        check_memory(big, big.build_network(), 60000, available=24 * 2.0**30)
    small = load_params({"network": {"layers": [784, 500, 10]}, "data": {"dataset": "mnist"}})
    parts = check_memory(small, small.build_network(), 60000, available=24 * 2.0**30)
    # 784·500 + 500·10 + 10·500 weights, float32, sgd: params + grads + transposed copies
    assert parts["parameters"] == (784 * 500 + 2 * 500 * 10) * 4 * 3
    fg = load_params({"network": {"layers": [784, 500, 10], "topology": "feedforward"}, "data": {"dataset": "mnist"},
                      "learning": {"rule": "forward_gradient", "forward_gradient": {"perturbations": 100000}}})
    est = memory_estimate(fg, fg.build_network(), 60000)
    assert est["batch"] > 50 * 2.0**30  # 20 × 100000 tiled rows


# -- fuzz: random values at random known keys --------------------------------------------------
_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-2**70, max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
    st.lists(st.integers(min_value=-5, max_value=2000), max_size=5),
    st.lists(st.floats(allow_nan=True), max_size=4), st.dictionaries(st.text(max_size=6), st.integers(), max_size=3),
)
_KEYS = [f"{section}.{name}" for section, model in (
    ("network", RunParams.model_fields["network"].annotation),
    ("dynamics", RunParams.model_fields["dynamics"].annotation),
    ("data", RunParams.model_fields["data"].annotation),
    ("record", RunParams.model_fields["record"].annotation)) for name in model.model_fields] + [
    "learning.rule", "learning.lr", "learning.bias_lr", "learning.cost", "learning.epochs", "learning.seed",
    "learning.batch_size", "learning.forward_gradient", "network.loop.scale", "network.projections", "bogus.key"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(_KEYS), _VALUES), min_size=1, max_size=4))
def test_fuzzed_parameters_validate_or_fail_with_a_parameter_error(items):
    raw = {"network": {"layers": [64, 16, 10]}}
    for key, value in items:
        *sections, name = key.split(".")
        node = raw
        for section in sections:
            node = node.setdefault(section, {}) if isinstance(node, dict) else node
        if isinstance(node, dict):
            node[name] = value
    try:
        cfg = load_params(raw)
    except ParameterError as err:
        msg = str(err)
        assert re.match(r"(invalid parameters in |[A-Za-z_][\w.\[\]]* = |(network|dynamics|learning|data|record)\.)",
                        msg), msg  # a key first, or a list of them
        return
    cfg.build_network()  # what validated must build
    memory_estimate(cfg, cfg.build_network(), 1437)
