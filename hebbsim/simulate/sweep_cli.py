"""``hebbsim sweep SWEEP.toml [--cluster local|slurm|pbs] [--workers N]`` and ``hebbsim sweep --status DIR``
(docs/hpc.md): the sweep subcommand of :mod:`hebbsim.simulate.cli`."""

from __future__ import annotations

import argparse
import sys

from ..errors import HebbsimError


def add_sweep_parser(sub) -> None:
    """Add the ``sweep`` subcommand to the CLI's subparsers."""
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


def sweep_command(args) -> int:
    """Run ``hebbsim sweep``: exit status 0 when every point is done, 1 when some failed, 2 on
    bad input (one ``hebbsim: error:`` line), 130 when interrupted."""
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
