"""The notebooks in examples/notebooks run top to bottom (nbclient, a real Jupyter kernel) on
tiny digits runs: the cell tagged ``parameters`` is replaced by tiny settings, as papermill
would, and what the notebooks print and draw is checked."""

import os
from pathlib import Path

import nbformat
import pytest
import tomli_w
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "examples" / "notebooks"
TINY = {"learning.batch_size": 10, "data.train_subset": 200, "data.test_subset": 60,
        "dynamics.free_steps": 20, "dynamics.nudge_steps": 6, "record.probes": 4}
TINY_SETS = [f"{k}={v}" for k, v in TINY.items()]


def execute(name: str, parameters: str, cwd: Path, monkeypatch) -> nbformat.NotebookNode:
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    assert all(c.get("outputs", []) == [] and c.get("execution_count") is None
               for c in nb.cells if c.cell_type == "code"), f"{name} is stored with outputs"
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1, "one cell tagged 'parameters'"
    cells[0].source = parameters
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    for var in ("OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
        monkeypatch.setenv(var, os.environ.get(var, "1"))
    NotebookClient(nb, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}).execute()
    return nb


def text_of(nb) -> str:
    out = []
    for c in nb.cells:
        for o in c.get("outputs", []):
            out.append(o.get("text", "") + o.get("data", {}).get("text/plain", ""))
    return "\n".join(out)


def images(nb) -> int:
    return sum("image/png" in o.get("data", {}) for c in nb.cells for o in c.get("outputs", []))


@pytest.mark.slow  # ~13 s; the explore_run script test keeps a notebook-path check in the default run
def test_01_first_run(tmp_path, monkeypatch):
    params = {"network": {"layers": [64, 32, 10], "topology": "loop", "clip_states": True},
              "learning": {"lr": [0.1, 0.05, 0.05], "epochs": 3}, "data": {"dataset": "digits"}}
    (tmp_path / "p.toml").write_text(tomli_w.dumps(params))
    nb = execute("01_first_run.ipynb", f"PARAMS = 'p.toml'\nRUN_FILE = 'runs/first.h5'\nOVERRIDES = {TINY_SETS!r}",
                 tmp_path, monkeypatch)
    text = text_of(nb)
    assert "epoch(s) published so far" in text and "3 epochs (complete): final test error" in text
    assert (tmp_path / "runs" / "first.h5").is_file()
    assert images(nb) == 6  # every plotting cell drew


@pytest.mark.slow
def test_02_loop_alignment(tmp_path, monkeypatch):
    base = {"network": {"layers": [64, 24, 24, 10], "topology": "loop", "clip_states": True,
                        "loop": {"kind": "learned"}},
            "dynamics": {"beta": 1.0}, "learning": {"lr": 0.05, "epochs": 3}, "data": {"dataset": "digits"},
            "record": {"path": "runs/learned.h5", "weights_every": 1}}
    (tmp_path / "learned.toml").write_text(tomli_w.dumps(base))
    base["network"]["loop"]["kind"] = "fixed"
    base["record"]["path"] = "runs/fixed.h5"
    (tmp_path / "fixed.toml").write_text(tomli_w.dumps(base))
    nb = execute("02_loop_alignment.ipynb",
                 f"ROOT = '.'\nLEARNED = 'learned.toml'\nFIXED = 'fixed.toml'\nOVERRIDES = {TINY_SETS!r}",
                 tmp_path, monkeypatch)
    text = text_of(nb)
    assert "learned loop: layers [64, 24, 24, 10], 3 epochs" in text
    for label, projections in (("learned loop", ("h1_to_h2", "h2_to_o", "o_to_h1")),
                               ("fixed loop", ("h1_to_h2", "h2_to_o"))):
        for proj in projections:
            assert f"{label:14s} {proj:10s}" in text, (label, proj)
    # the printed angles are the run file's (epoch 0 recomputed from the initial weights)
    import hebbsim

    ds = hebbsim.open_run(tmp_path / "runs" / "learned.h5")
    init = ds.hebbsim.loop_alignment_from_init().sel(projection="o_to_h1")
    line = next(ln for ln in text.splitlines() if ln.startswith(f"{'learned loop':14s} o_to_h1"))
    assert line.split()[3:5] == [f"{float(init[0]):.1f}°", f"{float(init[-1]):.1f}°"]
    assert "every angle starts within 5° of 90°:" in text and "every final angle below 90°:" in text
    assert images(nb) >= 1


@pytest.mark.slow
def test_03_compare_rules(tmp_path, monkeypatch):
    params = {"network": {"layers": [64, 32, 10], "topology": "loop", "clip_states": True},
              "learning": {"lr": [0.1, 0.05, 0.05]}, "data": {"dataset": "digits"}}
    (tmp_path / "base.toml").write_text(tomli_w.dumps(params))
    nb = nbformat.read(NOTEBOOKS / "03_compare_rules.ipynb", as_version=4)
    stored = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", [])).source
    # the notebook's own rules, with a tiny base, 2 epochs and 2 perturbations
    rules = stored.split("RULES = ", 1)[1].replace("perturbations=16", "perturbations=2")
    parameters = (f"BASE = 'base.toml'\nRUN_DIR = 'runs'\nCOMMON = ['learning.epochs=2', *{TINY_SETS!r}]\n"
                  f"RULES = {rules}")
    nb = execute("03_compare_rules.ipynb", parameters, tmp_path, monkeypatch)
    text = text_of(nb)
    for label in ("EP, symmetric", "EP, loop (sigprop)", "forward gradient"):
        assert label in text
    assert "ep_chl_classic" in text and "forward_gradient" in text
    assert sorted(p.name for p in (tmp_path / "runs").glob("*.h5")) == [
        "ep_loop_sigprop.h5", "ep_symmetric.h5", "forward_gradient.h5"]
    assert images(nb) >= 5


@pytest.mark.parametrize("epochs", [1])
def test_explore_run_script_on_a_one_epoch_run(tmp_path, tiny_run, epochs):
    """examples/explore_run.py once crashed on a one-epoch run ("No numeric data to plot")."""
    import subprocess
    import sys

    import hebbsim

    p = tiny_run(learning__epochs=epochs)
    hebbsim.run(p, progress=False, log=None)
    env = dict(os.environ, PYTHONPATH=str(REPO), MPLBACKEND="Agg")
    res = subprocess.run([sys.executable, str(REPO / "examples" / "explore_run.py"), p["record"]["path"],
                          str(tmp_path / "plots")], capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "1 epoch (complete)" in res.stdout
    for name in ("learning_curves", "probe_trajectories", "loop_alignment", "weight_norms", "residuals"):
        assert (tmp_path / "plots" / f"{name}.png").stat().st_size > 10_000, name
