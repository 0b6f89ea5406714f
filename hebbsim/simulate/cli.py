"""Command line: ``hebbsim run PARAMS.toml [--set section.key=value …] [--resume]``, ``hebbsim info``."""

from __future__ import annotations

import argparse
import sys

from ..errors import HebbsimError
from .sweep_cli import add_sweep_parser, sweep_command


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
    add_sweep_parser(sub)  # hebbsim sweep (hebbsim.simulate.sweep_cli)
    args = parser.parse_args(argv)
    if args.command == "info":
        return _info()
    if args.command == "sweep":
        return sweep_command(args)
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
