"""Benchmarks of the studyvisit server: read, push and pull speed, a load test, peak memory.

Run them all with ``python -m bench.run`` (``--smoke`` for a quick check); see ``bench/README.md``.
"""
