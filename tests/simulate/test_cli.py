"""The command line a new user meets: --version, --help, output that fits a batch job's log,
-q/-v, progress bars only when asked or on a terminal, Ctrl-C and SIGTERM without a traceback."""

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import tomli_w

import hebbsim
from hebbsim.data.checkpoint import checkpoint_path, load_checkpoint
from hebbsim.simulate.cli import build_parser, main

REPO = Path(__file__).resolve().parents[2]


def _toml(p: dict, folder: Path) -> Path:
    f = folder / "p.toml"
    f.write_text(tomli_w.dumps(p))
    return f


def test_version_and_help_texts(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"hebbsim {hebbsim.__version__}"
    parser = build_parser()
    texts = [parser.format_help()] + [p.format_help() for p in parser._subparsers._group_actions[0].choices.values()]
    for text in texts:
        assert "``" not in text and ":func:" not in text and ":class:" not in text
    assert all(opt in texts[1] for opt in ("--resume", "--overwrite", "--quiet", "--verbose", "--progress",
                                           "--no-progress"))


def test_a_batch_job_gets_one_log_line_per_epoch_and_no_progress_bars(tiny_run, tmp_path, capsys):
    f = _toml(tiny_run(learning__epochs=3), tmp_path)
    assert main(["run", str(f)]) == 0  # stderr is not a terminal here, as in a batch job
    out, err = capsys.readouterr()
    assert "\r" not in err and out.startswith("final test error")
    lines = err.strip().splitlines()
    assert [line.split()[2:4] for line in lines if " epoch " in line] == [["epoch", f"{k}/3"] for k in (1, 2, 3)]
    assert len(lines) == 5 and len(err) < 1000  # start, 3 epochs, the run file; each line dated
    assert all(line[:4].isdigit() and line[10] == " " for line in lines)


def test_quiet_verbose_and_forced_progress_bars(tiny_run, tmp_path, capsys):
    p = tiny_run(learning__epochs=1)
    f = _toml(p, tmp_path)
    assert main(["run", str(f), "-q"]) == 0
    assert capsys.readouterr() == ("", "")
    assert main(["run", str(f), "-v", "--overwrite"]) == 0
    err = capsys.readouterr().err
    assert "checkpoint written in" in err and "training and 100 test samples" in err and "\r" not in err
    assert main(["run", str(f), "--progress", "--overwrite"]) == 0
    err = capsys.readouterr().err
    assert "\r" in err and "epochs: 100%" in err and "epoch   1/1" in err


def test_the_library_logs_and_prints_nothing(tiny_run, caplog, capsys):
    with caplog.at_level(logging.INFO, logger="hebbsim"):
        hebbsim.run(tiny_run(learning__epochs=2))
    epochs = [r for r in caplog.records if r.name == "hebbsim.simulate.runner" and r.getMessage().startswith("epoch")]
    assert len(epochs) == 2 and all(r.levelno == logging.INFO for r in epochs)
    assert capsys.readouterr() == ("", "")  # no bars (not a terminal), no prints; handlers are the caller's


@pytest.mark.parametrize("sig,status,word", [
    (signal.SIGINT, 130, "interrupted"),
    pytest.param(signal.SIGTERM, 143, "terminated", marks=pytest.mark.slow),  # the same path as SIGINT
])
def test_ctrl_c_and_sigterm_end_with_one_line_and_resume_continues(sig, status, word, tiny_run, tmp_path):
    p = tiny_run(learning__epochs=400)
    path = Path(p["record"]["path"])
    # a shell that starts the tests in the background (`nohup … &`) hands SIGINT down ignored,
    # and a process that starts with SIGINT ignored rightly keeps ignoring it: start this one as
    # an interactive shell would
    proc = subprocess.Popen([sys.executable, "-m", "hebbsim.simulate.cli", "run", str(_toml(p, tmp_path))],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONPATH=str(REPO)),
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    seen = []
    t0 = time.monotonic()
    while not any(" epoch   2/" in line for line in seen):
        line = proc.stderr.readline()
        assert line and time.monotonic() - t0 < 120, "".join(seen)
        seen.append(line)
    proc.send_signal(sig)
    out, rest = proc.communicate(timeout=60)
    assert proc.returncode == status, rest
    assert "Traceback" not in rest and "KeyboardInterrupt" not in rest
    assert rest.strip().splitlines()[-1].startswith(f"hebbsim: {word}") and "--resume" in rest
    held = hebbsim.open_run(path).sizes["epoch"]
    assert held >= 2 and load_checkpoint(checkpoint_path(path))[1]["epoch"] in (held - 1, held)
    assert sorted(x.name for x in tmp_path.iterdir()) == ["p.toml", "run.h5", "run.h5.ckpt.npz"]
    ds = hebbsim.run(p, [f"learning.epochs={held + 1}"], resume=True, progress=False)
    assert list(ds.epoch.values) == list(range(1, held + 2))


def test_resuming_a_finished_run_says_there_is_nothing_to_train(tiny_run, caplog):
    p = tiny_run(learning__epochs=1)
    hebbsim.run(p, progress=False)
    with caplog.at_level(logging.INFO, logger="hebbsim"):
        ds = hebbsim.run(p, resume=True, progress=False)
    assert list(ds.epoch.values) == [1]
    assert "already holds all 1 epochs: nothing to train" in caplog.text and "epochs 2 to 1" not in caplog.text


def test_a_reader_that_leaves_early_gets_no_traceback():
    """`hebbsim info | head -1`, `hebbsim sweep --status DIR | head`: the pipe closes under the
    writer; the command ends quietly with the shell's SIGPIPE status."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "hebbsim.simulate.cli", "info"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader leaves before anything is written
    _, err = proc.communicate(timeout=120)
    assert b"Traceback" not in err and b"BrokenPipe" not in err, err.decode()
    assert proc.returncode == 141
