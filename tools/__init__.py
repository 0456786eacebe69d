"""Benchmarks and documentation tools: run from the repository root (python -m tools.NAME), never installed."""
