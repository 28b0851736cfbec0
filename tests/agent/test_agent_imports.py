from __future__ import annotations

import subprocess
import sys


def test_agent_runtime_imports_light() -> None:
    """The runtime, clients and server import without torch, transformers, httpx or aiohttp."""
    code = (
        "import sys\n"
        "from mmat.agent import Agent, OpenAIModel, TransformersModel, AgentServer, UserOperator\n"
        "import mmat.agent.cli\n"
        "heavy = [m for m in ('torch', 'transformers', 'httpx', 'aiohttp', 'numpy') if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
