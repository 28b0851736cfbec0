"""Operators the reasoner calls: caption, OCR, open-vocabulary detection, face detection, RAG search."""
