"""`python -m services.ingest`: run the ingest service alone (what `kuaijing serve ingest` does)."""

from services.ingest.app import main

if __name__ == "__main__":
    raise SystemExit(main())
