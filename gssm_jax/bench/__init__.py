"""Benchmarks: `python -m gssm_jax.bench gssm|train|data [flags]`, one JSON line per measurement."""
