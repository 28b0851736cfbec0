"""Exporters: MMAT-1M release layout, ms-swift, LLaMA-Factory, LLaVA, Parquet, dataset card.

Every exporter reads a build only through :func:`mmat.store.iter_accepted` (streaming) and is
registered in the ``mmat.exporters`` entry-point group; ``mmat export OUT_DIR --format NAME`` runs one.

Adding an exporter:

1. Chat formats: subclass :class:`mmat.export.conversation.ConversationExporter` and implement
   ``row(sample, messages, images)``; messages arrive with one ``<image>`` per image (checked) and
   images already placed (relative / absolute / copied), sharding and splits are done for you.
   Anything else: subclass :class:`mmat.export.base.Exporter` and implement ``export``.
2. Register it in ``pyproject.toml`` under ``[project.entry-points."mmat.exporters"]``
   (``name = "package.module:Class"``) and ``pip install -e . --no-deps``.
3. Add a round-trip test that re-reads the files and compares them with the stored samples
   (see ``tests/export/test_export_formats.py``).
"""
