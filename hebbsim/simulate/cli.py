"""Command line: ``hebbsim run PARAMS.toml [--set section.key=value …] [--resume]``, ``hebbsim info``."""

from __future__ import annotations

import argparse
import sys

from ..errors import HebbsimError


def _info() -> int:
    import platform

    import numba
    import numpy

    from .. import __version__

    print(f"hebbsim {__version__}  (python {platform.python_version()}, {platform.machine()})")
    print(f"numpy {numpy.__version__}, numba {numba.__version__}")
    try:
        import diffrax
        import jax

        print(f"jax {jax.__version__}, diffrax {diffrax.__version__}; devices: "
              + ", ".join(str(d) for d in jax.devices()))
    except Exception as err:  # jax is optional at run time: report, do not fail
        print(f"jax engine unavailable: {err}")
    print("engines: numba (CPU, explicit Euler); jax (diffrax: euler, tsit5, dopri5; CPU or GPU)")
    return 0


# -- hebbsim sweep (SPEC §8; hebbsim.simulate.sweep) ---------------------------------------------
def _add_sweep_parser(sub) -> None:
    def positive(text: str) -> int:
        if not text.isdigit() or int(text) < 1:
            raise argparse.ArgumentTypeError(f"--workers = {text}: give a positive whole number")
        return int(text)

    p = sub.add_parser("sweep", help="run a sweep file's points on Dask (local, SLURM, PBS)",
                       description="Run every unfinished point of a sweep file, or show a sweep's index.")
    p.add_argument("sweep_file", nargs="?", metavar="SWEEP.toml", help="sweep file (see docs/hpc.md)")
    p.add_argument("--cluster", choices=["local", "slurm", "pbs"], help="where to run (default: [cluster] kind)")
    p.add_argument("--workers", type=positive, metavar="N", help="points at once (default: [cluster] workers)")
    p.add_argument("--output", metavar="DIR", help="sweep folder (default: the sweep file's output)")
    p.add_argument("--status", metavar="DIR", help="print the index of the sweep folder DIR and exit")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (log lines only)")


def _sweep(args) -> int:
    import logging

    from .sweep import sweep
    from .sweep_index import SweepIndex

    if (args.status is None) == (args.sweep_file is None):
        print("hebbsim: error: sweep: give a sweep file to run, or --status DIR to show one", file=sys.stderr)
        return 2
    try:
        if args.status is not None:
            index = SweepIndex.load(args.status)
            index.refresh()
            print(index.table())
            return 0
        log = logging.getLogger("hebbsim.sweep")
        if not log.handlers:
            handler = logging.StreamHandler()
            handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
            log.addHandler(handler)
            log.setLevel(logging.INFO)
        result = sweep(args.sweep_file, cluster=args.cluster, workers=args.workers, output=args.output,
                       progress=False if args.no_progress else None)
    except HebbsimError as err:
        print(f"hebbsim: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("hebbsim: interrupted; the sweep's jobs are stopped, run the same command to continue", file=sys.stderr)
        return 130
    print(result.table())
    return 0 if result.complete else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hebbsim", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="train a network from a parameter file")
    p_run.add_argument("params", help="TOML parameter file")
    p_run.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                       help="override one parameter (repeatable), e.g. --set learning.epochs=5")
    p_run.add_argument("--resume", action="store_true",
                       help="continue from the run's checkpoint after its last completed epoch")
    p_run.add_argument("--no-progress", action="store_true", help="no progress bars (log lines only)")
    sub.add_parser("info", help="versions, engines and devices")
    _add_sweep_parser(sub)
    args = parser.parse_args(argv)
    if args.command == "info":
        return _info()
    if args.command == "sweep":
        return _sweep(args)
    from .runner import run

    try:
        ds = run(args.params, args.overrides, resume=args.resume, progress=not args.no_progress)
    except HebbsimError as err:
        print(f"hebbsim: error: {err}", file=sys.stderr)
        return 2
    print(f"final test error {100 * float(ds.test_error[-1]):.2f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
