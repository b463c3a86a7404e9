"""Benchmarks: each prints its figures beside an anchor measured in the same run, as ratios."""
