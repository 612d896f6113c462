"""Benchmarks: commands that print a table and write ``bench/results/<stage>.json``."""
