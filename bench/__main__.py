"""`python -m bench [NAME ...]` (or `make bench`): run the named benchmarks, all by default."""

from __future__ import annotations

import argparse
import importlib

BENCHES = ("ingest", "dispatcher", "analytics", "jt808")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"one of {', '.join(BENCHES)} (default: all)")
    parser.add_argument("--quick", action="store_true", help="smaller volumes, for a smoke run")
    args = parser.parse_args()
    for name in args.names or BENCHES:
        module = importlib.import_module(f"bench.{name}")
        module.run(quick=args.quick)


if __name__ == "__main__":
    main()
