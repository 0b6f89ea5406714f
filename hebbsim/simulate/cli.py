"""Command line: ``hebbsim run PARAMS.toml [--set section.key=value ...] [--resume | --overwrite]``,
``hebbsim report RUN.h5|SWEEP_DIR [--out DIR]``, ``hebbsim info``.

This is the only place that configures logging: library code logs through
``logging.getLogger(__name__)``; here one handler on the ``hebbsim`` logger writes to stderr
(``-q``: warnings and errors only; ``-v``: also debug messages).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys

from .. import __version__
from ..errors import HebbsimError
from .sweep_cli import add_sweep_parser, sweep_command

DESCRIPTION = ("Simulate continuous-time neural networks that learn with local rules (Equilibrium "
               "Propagation, signal-propagation loops, forward gradients). Results go to an HDF5 run file "
               "per run, with a checkpoint beside it.")
RUN_EPILOG = ("An existing run file is never replaced silently: continue it with --resume or replace it with "
              "--overwrite. Progress bars are drawn only when stderr is a terminal; otherwise (batch jobs) "
              "each epoch is one log line. Exit status: 0 done, 2 error (one 'hebbsim: error:' line), "
              "130 interrupted (Ctrl-C) or 143 terminated (SIGTERM); the run file then holds every completed "
              "epoch and --resume continues it.")


class _Terminated(BaseException):
    """SIGTERM (a batch system's time limit, ``kill``): stop like Ctrl-C."""


def _on_sigterm(signum, frame):
    raise _Terminated


def _info() -> int:
    import platform

    import numba
    import numpy

    print(f"hebbsim {__version__}  (python {platform.python_version()}, {platform.machine()})")
    print(f"numpy {numpy.__version__}, numba {numba.__version__}")
    try:
        import diffrax
        import jax

        print(f"jax {jax.__version__}, diffrax {diffrax.__version__}; devices: "
              + ", ".join(str(d) for d in jax.devices()))
    except Exception as err:  # jax is optional at run time: report, do not fail
        print(f"jax engine unavailable: {err}")
    print("engines: numba (CPU, explicit Euler); jax (diffrax: euler, tsit5, dopri5; CPU or GPU); "
          "reference (the discrete feed-forward network on JAX: bp and the discrete rules)")
    return 0


# -- hebbsim report ------------------------------------------------------------------------------
def _add_report_parser(sub) -> None:
    p = sub.add_parser("report", help="plots (PNG) and a summary (markdown, self-contained HTML) of a run file "
                                      "or a sweep folder")
    p.add_argument("path", help="a run file (RUN.h5) or a sweep folder")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="where to write (default: RUN_report/ beside the run file, SWEEP_DIR/report/)")


def _report(args) -> int:
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed (batch nodes have none)
    from ..analysis.report import write_report

    try:
        report = write_report(args.path, args.out)
    except HebbsimError as err:
        print(f"hebbsim: error: {err}", file=sys.stderr)
        return 2
    print(f"{len(report.images)} plots, {report.markdown}, {report.html}")
    return 0
# -- end of hebbsim report ----------------------------------------------------------------------



class _Formatter(logging.Formatter):
    """``2026-11-27 18:02:11 epoch 3/30 ...``; warnings and errors say so."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        if record.levelno >= logging.WARNING:
            head, _, rest = line.partition(" | ")
            line = f"{head} {record.levelname.lower()}: {rest}"
        else:
            line = line.replace(" | ", " ", 1)
        return line


@contextlib.contextmanager
def logging_to_stderr(verbosity: int):
    """While in the block, one stderr handler on the ``hebbsim`` logger: ``verbosity`` -1 (quiet:
    warnings and errors), 0 (info: one line per epoch), 1 (debug). Restored afterwards (``main``
    may be called more than once in one process)."""
    level = {-1: logging.WARNING, 0: logging.INFO}.get(verbosity, logging.DEBUG)
    log = logging.getLogger("hebbsim")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter("%(asctime)s | %(message)s", datefmt="%Y-%m-%d %H:%M:%S"))
    before = log.level, log.propagate
    log.addHandler(handler)
    log.setLevel(level)
    log.propagate = False  # the CLI owns the output; no duplicate lines through the root logger
    try:
        yield
    finally:
        log.removeHandler(handler)
        log.setLevel(before[0])
        log.propagate = before[1]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hebbsim", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"hebbsim {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p_run = sub.add_parser("run", help="train a network from a parameter file",
                           description="Train a network from a TOML parameter file and write its run file "
                                       "(record.path) and checkpoint.", epilog=RUN_EPILOG)
    p_run.add_argument("params", help="TOML parameter file (e.g. examples/quickstart.toml)")
    p_run.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                       help="override one parameter (repeatable), e.g. --set learning.epochs=5; strings in "
                            "TOML quotes: --set dynamics.engine='\"jax\"'")
    mode = p_run.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true",
                      help="continue the run from its checkpoint after its last completed epoch")
    mode.add_argument("--overwrite", action="store_true",
                      help="replace an existing run file and checkpoint at record.path")
    bars = p_run.add_mutually_exclusive_group()
    bars.add_argument("--progress", dest="progress", action="store_true", default=None,
                      help="draw progress bars even when stderr is not a terminal")
    bars.add_argument("--no-progress", dest="progress", action="store_false",
                      help="no progress bars (one log line per epoch)")
    talk = p_run.add_mutually_exclusive_group()
    talk.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors (no progress bars)")
    talk.add_argument("-v", "--verbose", action="store_true", help="also debug messages")
    _add_report_parser(sub)
    add_sweep_parser(sub)  # hebbsim sweep (hebbsim.simulate.sweep_cli)
    sub.add_parser("info", help="versions, engines and devices")
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:  # `hebbsim … | head`: the reader left; no traceback, and none at exit either
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141  # a shell's status for a command ended by SIGPIPE


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "report":
        return _report(args)
    if args.command == "sweep":
        return sweep_command(args)
    if args.command == "info":
        return _info()
    progress = False if args.quiet and args.progress is None else args.progress
    with logging_to_stderr(-1 if args.quiet else 1 if args.verbose else 0):
        return _run(args, progress)


def _run(args: argparse.Namespace, progress: bool | None) -> int:
    try:
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # not the main thread (main() called from a thread): leave SIGTERM alone
        previous = None
    try:
        from .runner import run

        ds = run(args.params, args.overrides, resume=args.resume, overwrite=args.overwrite, progress=progress)
    except HebbsimError as err:
        print(f"hebbsim: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("hebbsim: interrupted; the run file holds every completed epoch (continue with --resume)",
              file=sys.stderr)
        return 130
    except _Terminated:
        print("hebbsim: terminated (SIGTERM); the run file holds every completed epoch (continue with --resume)",
              file=sys.stderr)
        return 143
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    if not args.quiet:
        print(f"final test error {100 * float(ds.test_error[-1]):.2f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
