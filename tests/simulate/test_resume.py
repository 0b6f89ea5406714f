"""``--resume``: bit-identical continuation, every epoch once, refusal of changed parameters."""

import shutil

import pytest

import hebbsim
from hebbsim.data.checkpoint import checkpoint_path
from hebbsim.simulate.cli import main
from hebbsim.simulate.resume import ResumeError

HARD = dict(data__augment_shift=1, dynamics__persistent_states=True, dynamics__random_sign_beta=True, dynamics__symmetric_nudging=True,
            learning__optimizer="adam", learning__lr=[0.01, 0.005, 0.005], learning__epochs=4,
            record__weights_every=2)
"""Everything a resumed run must restore: RNG (order, β sign), Adam moments, persistent states,
and the epoch's image translations."""


def test_resume_is_bit_identical_and_holds_every_epoch_once(tiny_run, tmp_path, assert_same_run):
    full = tiny_run("full", **HARD)
    hebbsim.run(full, progress=False, log=None)

    part = tiny_run("part", **HARD)
    hebbsim.run(part, ["learning.epochs=2"], progress=False, log=None)
    kept = shutil.copy(checkpoint_path(part["record"]["path"]), tmp_path / "epoch2.ckpt.npz")
    # the BLAS threads may change on resume (another machine) without changing the run
    hebbsim.run(part, ["learning.epochs=3", "dynamics.threads=1"], resume=True, progress=False, log=None)
    # as if killed after epoch 3 was published but before its checkpoint was written:
    shutil.copy(kept, checkpoint_path(part["record"]["path"]))
    logged = []
    ds = hebbsim.run(part, resume=True, progress=False, log=logged.append)
    assert any("resuming" in m and "after epoch 2" in m for m in logged)
    assert ds.attrs["resumed_at"].count("T") == 2  # two resumes, ISO times
    assert_same_run(full["record"]["path"], part["record"]["path"])


def test_resume_refuses_changed_parameters_naming_the_fix(tiny_run, capsys):
    p = tiny_run(learning__epochs=1)
    hebbsim.run(p, progress=False, log=None)
    with pytest.raises(ResumeError) as err:
        hebbsim.run(p, ["dynamics.dt=0.25", "learning.epochs=2"], resume=True, progress=False, log=None)
    msg = str(err.value)
    assert "dynamics.dt: checkpoint 0.5, now 0.25" in msg and "Only learning.epochs, dynamics.threads may change" in msg
    assert "learning.epochs:" not in msg and "without --resume" in msg
    with pytest.raises(ResumeError, match="beyond learning.epochs"):
        hebbsim.run(p, ["learning.epochs=2"], resume=True, progress=False, log=None)  # now at 2
        hebbsim.run(p, ["learning.epochs=1"], resume=True, progress=False, log=None)


def test_cli_resume_and_fresh_start_without_checkpoint(tiny_run, tmp_path, capsys):
    import tomli_w

    p = tiny_run("cli", learning__epochs=2)
    f = tmp_path / "p.toml"
    f.write_text(tomli_w.dumps(p))
    assert main(["run", str(f), "--resume", "--set", "learning.epochs=1", "--no-progress"]) == 0  # nothing to resume
    assert "no checkpoint" in capsys.readouterr().err  # log lines go to stderr
    assert main(["run", str(f), "--resume", "--no-progress"]) == 0
    assert list(hebbsim.open_run(p["record"]["path"]).epoch.values) == [1, 2]
    assert main(["run", str(f), "--resume", "--set", "network.rho=\"sigmoid\"", "--no-progress"]) == 2
    assert "network.rho: checkpoint 'hard_sigmoid', now 'sigmoid'" in capsys.readouterr().err


def test_a_key_added_since_the_checkpoint_is_at_its_default_not_a_difference(tiny_run):
    """A run started by an older hebbsim resumes: its parameters lack keys added since (here
    data.augment_shift), whose defaults keep the old behaviour."""
    from hebbsim.data.params import load_params
    from hebbsim.simulate.resume import parameter_differences

    now = load_params(tiny_run()).to_toml()
    assert "augment_shift = 0" in now
    older = now.replace("augment_shift = 0\n", "")
    assert parameter_differences(older, now) == {}
    assert parameter_differences(older, now.replace("augment_shift = 0", "augment_shift = 1")) == {
        "data.augment_shift": (0, 1)}
    # a key this version does not know is compared as written, and named
    diff = parameter_differences(older.replace("[data]\n", "[data]\nretired_key = 3\n"), now)
    assert diff["data.retired_key"] == (3, None)
