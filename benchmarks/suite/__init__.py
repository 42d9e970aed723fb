"""The benchmark suite behind ``benchmarks/run.py``: cases, implementations, timing, machine
information, reports and plots (one module each)."""
