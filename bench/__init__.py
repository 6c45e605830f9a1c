"""Benchmarks for plait: the local runner against sayiir (``python -m bench.local``)."""
