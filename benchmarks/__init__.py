"""Measurements: ``make bench`` (``bench``: each stage's cost, the CPU runtimes, what the cores allow),
``make cluster-bench`` (``cluster``), and perf_analyzer's input files (``perf_data``).

May import ``cluster``, ``serving``, ``prepare``, ``client``, ``evaluation`` and ``python_backends``; ``tools`` sits
above it.
"""
