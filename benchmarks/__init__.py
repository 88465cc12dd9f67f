"""Scripted performance runs of wmsync against local emulators (issue 6).

``python -m benchmarks [--long] [--only NAME] [--smoke]`` builds clusters of emulated
repositories (each emulator in a process of its own, bulk-loaded straight into SQLite),
runs synchronizations through the real HTTP path, each in a fresh client process so that
its peak memory is its own, and writes the figures to ``benchmarks/results/latest.json``.
See docs/performance.md for the scenarios and the latest figures.
"""
