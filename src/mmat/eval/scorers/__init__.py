"""Benchmark scorers: rule-based answer extraction, an optional judge fallback, and aggregate metrics."""
