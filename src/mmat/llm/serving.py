"""An aiohttp application served from a background thread: the lifecycle of mmat's local servers.

The mock teacher (:class:`~mmat.llm.mock_server.MockTeacherServer`) and the agent endpoint
(:class:`~mmat.agent.server.AgentServer`) subclass :class:`BackgroundServer` and only say what they
serve (:meth:`BackgroundServer.build_app`). Tests use them as context managers; the CLI serves in the
foreground with :meth:`BackgroundServer.serve_forever`.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any, ClassVar

from mmat.errors import ConfigError, MissingDependencyError


class BackgroundServer:
    """Serves :meth:`build_app` on ``host:port`` (0 picks a free port) until :meth:`stop`.

    Subclasses set ``label`` (for messages) and implement :meth:`build_app`; it runs inside the
    server's event loop, so it may create loop-bound objects (semaphores, events).
    """

    label: ClassVar[str] = "server"
    shutdown_timeout_s: ClassVar[float] = 1.0
    site_options: ClassVar[dict[str, Any]] = {}

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self._requested_port = port
        self._port: int | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None

    def build_app(self) -> Any:
        """The ``aiohttp.web.Application`` to serve."""
        raise NotImplementedError

    async def on_shutdown(self) -> None:
        """Called in the server's loop after the app stopped serving."""

    @property
    def port(self) -> int:
        if self._port is None:
            raise ConfigError(f"the {self.label} is not running; call start() or use it as `with`")
        return self._port

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def start(self) -> Any:
        """Serve in a background thread; returns self once the port is open."""
        if self._thread is not None:
            return self
        ready = threading.Event()
        failure: list[BaseException] = []

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._main(ready))
            except BaseException as error:  # reported by start()
                failure.append(error)
                ready.set()
            finally:
                loop.close()

        self._thread = threading.Thread(target=serve, name=f"mmat-{self.label}", daemon=True)
        self._thread.start()
        ready.wait(30)
        if failure:
            self._thread = None
            raise ConfigError(
                f"the {self.label} could not start on {self.host}:{self._requested_port}: {failure[0]}"
            )
        return self

    def stop(self) -> None:
        """Stop serving and close every connection."""
        if self._thread is None or self._loop is None:
            return
        if self._stop_event is not None:
            self._loop.call_soon_threadsafe(self._stop_event.set)
        self._thread.join(30)
        self._thread = None
        self._port = None

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def serve_forever(self, on_ready: Callable[[Any], object] | None = None) -> None:
        """Serve in the calling thread until interrupted (the CLI's mode)."""
        ready = threading.Event()
        if on_ready is not None:
            threading.Thread(target=lambda: (ready.wait(30), on_ready(self)), daemon=True).start()
        asyncio.run(self._main(ready))

    async def _main(self, ready: threading.Event) -> None:
        try:
            from aiohttp import web
        except ImportError as error:
            raise MissingDependencyError(f"the {self.label} (aiohttp)", "agent", error) from None
        self._stop_event = asyncio.Event()
        runner = web.AppRunner(self.build_app(), access_log=None, shutdown_timeout=self.shutdown_timeout_s)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self._requested_port, **self.site_options)
        await site.start()
        server = getattr(site, "_server", None)
        sockets = getattr(server, "sockets", None) or []
        self._port = sockets[0].getsockname()[1] if sockets else self._requested_port
        ready.set()
        try:
            await self._stop_event.wait()
        finally:
            await runner.cleanup()
            await self.on_shutdown()
