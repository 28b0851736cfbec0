"""The four stages after Foundation: rationale, reflection, integration, quality."""
