"""Teacher and student model clients: OpenAI-compatible HTTP, embedded local model, batch API, mock server."""

from mmat.llm.factory import teacher_from_config

create_teacher = teacher_from_config

__all__ = ["create_teacher", "teacher_from_config"]
