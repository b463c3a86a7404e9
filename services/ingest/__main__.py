"""`python -m services.ingest`: run the ingest service alone (the `kuaijing serve ingest` command)."""

from services.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["serve", "ingest"]))
