"""`python -m services.dispatcher`: run the dispatcher service alone (what `kuaijing serve dispatcher` does)."""

from services.dispatcher.app import main

if __name__ == "__main__":
    raise SystemExit(main())
