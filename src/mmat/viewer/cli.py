"""``mmat view OUT_DIR``: index a build and serve the viewer on 127.0.0.1."""

from __future__ import annotations

import time
import webbrowser

import click


@click.command("view")
@click.argument("out_dir", type=click.Path(exists=True, file_okay=False))
@click.option(
    "--port", type=int, default=8765, show_default=True, help="Port on 127.0.0.1 (0 picks a free one)."
)
@click.option("--open", "open_browser", is_flag=True, help="Open the page in the default browser.")
@click.option(
    "--no-cache", is_flag=True, help="Re-index every shard instead of reusing OUT_DIR/.mmat-viewer."
)
def view(out_dir: str, port: int, open_browser: bool, no_cache: bool) -> None:
    """Browse the samples, boxes, rejects and statistics of a build OUT_DIR in a local web page."""
    from mmat.errors import ConfigError
    from mmat.viewer.index import RecordIndex
    from mmat.viewer.server import ViewerServer

    started = time.perf_counter()
    index = RecordIndex.build(
        out_dir, cache=not no_cache, progress=lambda n: click.echo(f"indexed {n} records...", err=True)
    )
    try:
        server = ViewerServer(out_dir, port=port, index=index)
    except OSError as error:
        raise ConfigError(f"cannot listen on 127.0.0.1:{port} ({error}); pick another with --port") from None
    click.echo(
        f"indexed {len(server.index)} records in {time.perf_counter() - started:.1f}s; "
        f"serving {server.out_dir} at {server.url} (Ctrl-C stops)"
    )
    if open_browser:
        webbrowser.open(server.url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
