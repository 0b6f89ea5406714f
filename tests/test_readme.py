"""README.md's commands work as written: CI runs its set-up and test commands verbatim, every
``hebbsim`` line parses and its parameter file loads with its overrides, and (slow) the
quickstart lines and the Python example run from a fresh folder."""

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import hebbsim
from hebbsim.data.params import load_params
from hebbsim.simulate.cli import build_parser

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()


def _blocks(lang: str, section: str) -> list[str]:
    body = README.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(rf"```{lang}\n(.*?)```", body, flags=re.S)


def _commands(section: str) -> list[str]:
    lines = "\n".join(_blocks("bash", section)).splitlines()
    return [line.split("  #")[0].strip() for line in lines if line.strip()]


def test_ci_runs_the_readme_set_up_and_test_commands_verbatim():
    ci = [line.strip() for line in (REPO / ".ci" / "run").read_text().splitlines()]
    commands = _commands("Set up")
    assert len(commands) == 3
    for command in commands:
        assert any(line == command or line.startswith(command + " ||") for line in ci), command
    assert 'cd "$(dirname "$0")/.."' in ci


def test_every_hebbsim_line_parses_and_its_parameters_load():
    runs = 0
    for command in _commands("Use"):
        words = shlex.split(command)
        env = {}
        while "=" in words[0]:
            k, v = words.pop(0).split("=", 1)
            env[k] = v
        if words[0] != "hebbsim":
            continue
        if words[1:] == ["--version"]:
            continue
        args = build_parser().parse_args(words[1:])
        if args.command != "run":
            continue
        cfg = load_params(REPO / args.params, args.overrides)
        if cfg.data.dataset == "mnist":  # README says where MNIST comes from on each such line
            assert env.get("HEBBSIM_DATA") == "../shared/data", command
        runs += 1
    assert runs == 8


@pytest.mark.slow
def test_the_quickstart_lines_run_as_written(tmp_path):
    """From a fresh folder holding the examples: the set-up's run, the explore script, the Python
    example, and the refusal of a second run of the same file (about 30 s)."""
    shutil.copytree(REPO / "examples", tmp_path / "examples")
    env = dict(os.environ, PYTHONPATH=str(REPO), MPLBACKEND="Agg")
    hebbsim_cmd = [sys.executable, "-m", "hebbsim.simulate.cli"]

    def sh(command: str, check: int = 0) -> subprocess.CompletedProcess:
        words = shlex.split(command)
        words = hebbsim_cmd + words[1:] if words[0] == "hebbsim" else [sys.executable] + words[1:]
        res = subprocess.run(words, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert res.returncode == check, res.stderr
        return res

    set_up = _commands("Set up")[0].split(" && ")[1]
    assert set_up == "hebbsim run examples/quickstart.toml"
    res = sh(set_up)
    assert "epoch  30/30" in res.stderr and res.stdout.startswith("final test error")
    explore = next(c for c in _commands("Use") if c.startswith("python examples/explore_run.py"))
    sh(explore)
    assert (tmp_path / "plots" / "learning_curves.png").stat().st_size > 10_000
    code = _blocks("python", "Use")[0]
    subprocess.run([sys.executable, "-c", "import matplotlib; matplotlib.use('Agg')\n" + code], cwd=tmp_path, env=env,
                   check=True, capture_output=True, timeout=600)
    assert list(hebbsim.open_run(tmp_path / "runs" / "short.h5").epoch.values) == [1, 2, 3, 4, 5]
    res = sh(set_up, check=2)
    assert "--resume" in res.stderr and "--overwrite" in res.stderr
