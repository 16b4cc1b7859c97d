"""Benchmarks (not tests): each measures one thing over several runs and writes results/bench/. Nothing
outside this package imports it."""
