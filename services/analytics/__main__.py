"""`python -m services.analytics`: run the analytics service alone (what `kuaijing serve analytics` does)."""

from services.analytics.app import main

if __name__ == "__main__":
    raise SystemExit(main())
