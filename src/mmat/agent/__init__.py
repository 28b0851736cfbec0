"""The runtime that runs a model tuned on MMAT data: RR (live tools), ORR (tools first) or baseline.

    >>> from mmat.agent import Agent, OpenAIModel
    >>> agent = Agent(OpenAIModel("http://127.0.0.1:8000/v1", "mmat-8b"), tools)
    >>> result = await agent.answer(["table.png"], "What is the total?", mode="rr")

Names are imported on first use, so ``import mmat.agent`` stays light (no torch, no httpx).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Agent": "mmat.agent.runtime",
    "UserOperator": "mmat.agent.runtime",
    "AgentResult": "mmat.agent.result",
    "AgentMode": "mmat.agent.result",
    "OperatorTiming": "mmat.agent.result",
    "ModelClient": "mmat.agent.models",
    "Generation": "mmat.agent.models",
    "OpenAIModel": "mmat.agent.models",
    "TransformersModel": "mmat.agent.models",
    "AgentServer": "mmat.agent.server",
    "SimulatedToolProvider": "mmat.agent.simulated",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'mmat.agent' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
