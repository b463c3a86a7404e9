"""`python -m bench [NAME ...]` (or `make bench`): run the named benchmarks, all by default."""

from __future__ import annotations

import argparse
import importlib

from bench.environment import machine

BENCHES = ("ingest", "dispatcher", "analytics", "jt808", "console")
ALSO = ("calls",)
"""Part of a bench above, also run alone when named (`calls`: the calls path of `dispatcher`, without PostGIS)."""
ON_REQUEST = ("soak",)
"""Run only when named: the soak takes ten minutes by default."""


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "names", nargs="*", metavar="NAME", choices=[[], *BENCHES, *ALSO, *ON_REQUEST],
        help=f"one of {', '.join(BENCHES + ALSO + ON_REQUEST)} (default: {', '.join(BENCHES)})",
    )  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="smaller volumes, for a smoke run (soak: 60 s)")
    parser.add_argument("--minutes", type=float, help="soak: how long to run (default 10)")
    args = parser.parse_args()
    if args.minutes is not None and "soak" not in args.names:
        parser.error("--minutes is for the soak")
    print(f"machine: {machine()}", flush=True)
    for name in args.names or BENCHES:
        module = importlib.import_module(f"bench.{name}")
        if name == "soak":
            module.run(quick=args.quick, minutes=args.minutes)
        else:
            module.run(quick=args.quick)


if __name__ == "__main__":
    main()
