"""The engine runtime: async scheduling, rate limits, the call cache, checkpoint/resume, progress.

See :mod:`mmat.engine.context` for how a stage uses the engine and :mod:`mmat.engine.runner` for a run.
"""

from mmat.engine.cache import CallCache, call_key
from mmat.engine.context import EngineContext
from mmat.engine.runner import Engine

__all__ = ["CallCache", "Engine", "EngineContext", "call_key"]
