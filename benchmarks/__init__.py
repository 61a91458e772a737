"""The benchmark suite: each module runs on its own (``python -m benchmarks.NAME``)."""
