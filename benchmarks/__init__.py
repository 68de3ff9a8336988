"""Benchmarks: each module times one capability against a baseline in the same run."""
