"""Exporters: MMAT-1M release layout, ms-swift, LLaMA-Factory, LLaVA, Parquet, dataset card."""
