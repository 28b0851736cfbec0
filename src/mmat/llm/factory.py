"""Build the teacher a run config names (``teacher.kind`` is a registered teacher name)."""

from __future__ import annotations

from mmat.config import TeacherConfig
from mmat.errors import ConfigError
from mmat.llm.base import Teacher
from mmat.registry import TEACHERS


def teacher_from_config(config: TeacherConfig) -> Teacher:
    """Instantiate ``config.kind`` through its ``from_config`` classmethod (or with no arguments).

    Raises:
        UnknownPluginError: the kind is not registered (the message lists the valid names).
    """
    cls = TEACHERS.get(config.kind)
    build = getattr(cls, "from_config", None)
    teacher = build(config) if build is not None else cls()
    if not isinstance(teacher, Teacher):
        raise ConfigError(f"teacher {config.kind!r} built a {type(teacher).__name__}, not a mmat Teacher")
    return teacher
