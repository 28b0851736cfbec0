"""The viewer's HTTP server: a JSON API over :class:`RecordIndex`, the page, and the images.

Bound to 127.0.0.1 only. It serves its own three static files, JSON built from the build's records,
and image files that resolve inside their recorded root or inside OUT_DIR; any path with a ``..``
segment (raw or percent-encoded) gets 403, anything else unknown 404.
"""

from __future__ import annotations

import json
import logging
import math
import mimetypes
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from mmat.errors import ImageError
from mmat.images import MAX_IMAGE_BYTES, resolve_image
from mmat.schema import ImageRef
from mmat.viewer.boxes import sample_boxes
from mmat.viewer.index import ACCEPTED, Query, RecordIndex

logger = logging.getLogger(__name__)

HOST = "127.0.0.1"
STATIC_FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/static/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/static/style.css": ("style.css", "text/css; charset=utf-8"),
}
IMAGE_TYPES = {".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp"}


def _static(name: str) -> bytes:
    return resources.files("mmat.viewer").joinpath("static", name).read_bytes()


def _image_size(ref: ImageRef, path: Path | None) -> tuple[int | None, int | None]:
    if ref.width and ref.height:
        return ref.width, ref.height
    if path is None:
        return None, None
    try:
        from PIL import Image

        with Image.open(path) as probe:
            return probe.size
    except Exception:  # a broken image is shown as missing, not a server error
        return None, None


class ViewerServer(ThreadingHTTPServer):
    """Serves one build directory. ``port=0`` picks a free port (see :attr:`url`)."""

    daemon_threads = True

    def __init__(
        self, out_dir: str | Path, *, port: int = 0, index: RecordIndex | None = None, cache: bool = True
    ) -> None:
        self.out_dir = Path(out_dir).resolve()
        self.index = index if index is not None else RecordIndex.build(self.out_dir, cache=cache)
        super().__init__((HOST, port), ViewerHandler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}/"

    def start_background(self) -> threading.Thread:
        """Serve in a daemon thread (tests, notebooks); stop with :meth:`shutdown`."""
        thread = threading.Thread(target=self.serve_forever, name="mmat-viewer", daemon=True)
        thread.start()
        return thread

    # ----------------------------------------------------------------------------------------------

    def image_file(self, n: int, i: int) -> Path:
        """The file of image ``i`` of record ``n``, only if it lies inside its root or OUT_DIR.

        Raises:
            PermissionError: it resolves outside both.
            FileNotFoundError: no such record, image or file.
        """
        if not 0 <= n < len(self.index) or self.index.status[n] != ACCEPTED:
            raise FileNotFoundError(f"record {n}")
        images = self.index.record(n).get("images") or []
        if not 0 <= i < len(images):
            raise FileNotFoundError(f"image {i} of record {n}")
        ref = ImageRef.model_validate(images[i])
        return self._resolve(ref)

    def _resolve(self, ref: ImageRef) -> Path:
        if ref.is_url:
            raise FileNotFoundError(ref.path)
        if ref.root is not None:
            try:
                path = resolve_image(ref)
            except ImageError as error:
                if error.reason == "image_outside_root":
                    raise PermissionError(str(error)) from None
                raise FileNotFoundError(str(error)) from None
        else:
            candidate = Path(ref.path)
            path = (candidate if candidate.is_absolute() else self.out_dir / candidate).resolve()
            if not path.is_relative_to(self.out_dir):
                raise PermissionError(f"{path} is outside {self.out_dir} and the image has no root")
            if not path.is_file():
                raise FileNotFoundError(str(path))
        if path.suffix.lower() not in IMAGE_TYPES:
            raise PermissionError(f"{path.name} is not an image file")
        return path

    def record_view(self, n: int) -> dict[str, Any]:
        """The JSON the sample page shows: the record, its images' URLs and sizes, the boxes."""
        record = self.index.record(n)
        accepted = self.index.status[n] == ACCEPTED
        images = []
        if accepted:
            for i, raw in enumerate(record.get("images") or []):
                ref = ImageRef.model_validate(raw)
                try:
                    path: Path | None = self._resolve(ref)
                    error = None
                except (PermissionError, FileNotFoundError) as problem:
                    path, error = None, str(problem)
                width, height = _image_size(ref, path)
                images.append(
                    {
                        "url": f"/image/{n}/{i}",
                        "path": ref.path,
                        "width": width,
                        "height": height,
                        "error": error,
                    }
                )
        return {
            "n": n,
            "status": "accepted" if accepted else "rejected",
            "record": record,
            "images": images,
            "boxes": sample_boxes(record) if accepted else [],
            "previous": n - 1 if n > 0 else None,
            "next": n + 1 if n + 1 < len(self.index) else None,
        }


def _float(values: dict[str, list[str]], key: str) -> float | None:
    try:
        value = float(values[key][0])
    except (KeyError, IndexError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _int(values: dict[str, list[str]], key: str, default: int) -> int:
    try:
        return int(values[key][0])
    except (KeyError, IndexError, ValueError):
        return default


class ViewerHandler(BaseHTTPRequestHandler):
    server: ViewerServer
    server_version = "mmat-viewer"

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s - %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        try:
            self._route()
        except BrokenPipeError:
            pass
        except Exception:
            logger.exception("viewer request %s failed", self.path)
            self._send_json({"error": "internal error; see the server log"}, HTTPStatus.INTERNAL_SERVER_ERROR)

    def _host_allowed(self) -> bool:
        """Refuse requests for another host name (DNS rebinding): only 127.0.0.1/localhost:port."""
        port = self.server.server_address[1]
        host = (self.headers.get("Host") or "").strip().lower()
        return host in {f"127.0.0.1:{port}", f"localhost:{port}", "127.0.0.1", "localhost"}

    def _route(self) -> None:
        if not self._host_allowed():
            self._send_error(HTTPStatus.FORBIDDEN, "unexpected Host header; open the viewer at 127.0.0.1")
            return
        parts = urlsplit(self.path)
        raw_path = parts.path
        decoded = unquote(raw_path)
        segments = decoded.replace("\\", "/").split("/")
        if ".." in segments or "\x00" in decoded or not decoded.startswith("/"):
            self._send_error(HTTPStatus.FORBIDDEN, "path traversal refused")
            return
        if decoded in STATIC_FILES:
            name, content_type = STATIC_FILES[decoded]
            self._send(HTTPStatus.OK, _static(name), content_type)
            return
        values = parse_qs(parts.query)
        pieces = [p for p in segments if p]
        if pieces == ["api", "list"]:
            self._list(values)
        elif pieces == ["api", "stats"]:
            self._send_json({**self.server.index.stats.to_dict(), "indexed": len(self.server.index)})
        elif pieces == ["api", "facets"]:
            self._send_json(self.server.index.facets())
        elif len(pieces) == 3 and pieces[:2] == ["api", "record"] and pieces[2].isdigit():
            n = int(pieces[2])
            if not 0 <= n < len(self.server.index):
                self._send_error(HTTPStatus.NOT_FOUND, f"no record {n}")
                return
            self._send_json(self.server.record_view(n))
        elif len(pieces) == 3 and pieces[0] == "image" and pieces[1].isdigit() and pieces[2].isdigit():
            self._image(int(pieces[1]), int(pieces[2]))
        else:
            self._send_error(HTTPStatus.NOT_FOUND, "not found")

    def _list(self, values: dict[str, list[str]]) -> None:
        def text(key: str) -> str:
            return values.get(key, [""])[0]

        query = Query(
            status=text("status"),
            source=text("source"),
            operator=text("operator"),
            reflection=text("reflection"),
            reason=text("reason"),
            quality_min=_float(values, "qmin"),
            quality_max=_float(values, "qmax"),
            text=text("q"),
            offset=_int(values, "offset", 0),
            limit=_int(values, "limit", 50),
        )
        page = self.server.index.query(query)
        self._send_json(
            {
                "total": page.total,
                "total_exact": page.total_exact,
                "offset": query.offset,
                "items": page.items,
            }
        )

    def _image(self, n: int, i: int) -> None:
        try:
            path = self.server.image_file(n, i)
        except PermissionError as error:
            self._send_error(HTTPStatus.FORBIDDEN, str(error))
            return
        except FileNotFoundError:
            self._send_error(HTTPStatus.NOT_FOUND, "no such image")
            return
        if path.stat().st_size > MAX_IMAGE_BYTES:
            self._send_error(HTTPStatus.FORBIDDEN, "image too large to serve")
            return
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        self._send(HTTPStatus.OK, path.read_bytes(), content_type, cache=True)

    def _send_json(self, data: Any, status: HTTPStatus = HTTPStatus.OK) -> None:
        body = json.dumps(data, ensure_ascii=False, allow_nan=False, default=str).encode("utf-8")
        self._send(status, body, "application/json; charset=utf-8")

    def _send_error(self, status: HTTPStatus, message: str) -> None:
        self._send_json({"error": message, "status": int(status)}, status)

    def _send(self, status: HTTPStatus, body: bytes, content_type: str, *, cache: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Cache-Control", "max-age=3600" if cache else "no-store")
        self.end_headers()
        self.wfile.write(body)


__all__ = ["HOST", "ViewerServer"]
