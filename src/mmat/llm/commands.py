"""``mmat mock-teacher``: run the mock OpenAI-compatible teacher server in the foreground."""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path

import click


@click.command("mock-teacher")
@click.option("--port", type=int, default=8000, show_default=True, help="Port on 127.0.0.1 (0 = any free).")
@click.option("--latency-ms", type=float, default=0.0, show_default=True, help="Median reply latency.")
@click.option("--latency-spread", type=float, default=0.0, show_default=True, help="Log-normal sigma.")
@click.option("--slow-tail-p", type=float, default=0.0, help="Probability of a slow reply.")
@click.option("--slow-tail-ms", type=float, default=0.0, help="Extra latency of a slow reply.")
@click.option("--rpm", type=int, default=None, help="Requests per minute before 429s.")
@click.option("--fault-rate", type=float, default=0.0, help="Probability of a random fault.")
@click.option("--fault-kinds", default="429,500,503", show_default=True, help="Kinds of random faults.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--script",
    "script_file",
    type=click.Path(exists=True, dir_okay=False),
    help='JSON list of replies: strings and {"fault": "429", "retry_after": 2} objects.',
)
def mock_teacher(
    port: int,
    latency_ms: float,
    latency_spread: float,
    slow_tail_p: float,
    slow_tail_ms: float,
    rpm: int | None,
    fault_rate: float,
    fault_kinds: str,
    seed: int,
    script_file: str | None,
) -> None:
    """Serve an OpenAI-compatible mock teacher on 127.0.0.1 until Ctrl-C (stats at /mock/stats)."""
    from mmat.llm.mock_server import MockTeacherServer, parse_script

    server = MockTeacherServer(
        latency_median_s=latency_ms / 1000.0,
        latency_spread=latency_spread,
        slow_tail_p=slow_tail_p,
        slow_tail_s=slow_tail_ms / 1000.0,
        rpm_limit=rpm,
        seed=seed,
        fault_rate=fault_rate,
        fault_kinds=[k.strip() for k in fault_kinds.split(",") if k.strip()],
        port=port,
    )
    if script_file:
        server.script(parse_script(json.loads(Path(script_file).read_text(encoding="utf-8"))))
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    server.start()
    click.echo(f"mock teacher listening on {server.base_url} (Ctrl-C to stop)", err=True)
    try:
        while not done.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        click.echo(json.dumps(server.stats()), err=True)
