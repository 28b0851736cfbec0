"""The viewer's HTTP API, its confinement to OUT_DIR, the byte-offset index and the box reader."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from mmat.export.example_build import example_sample, write_example_build
from mmat.schema import ImageRef
from mmat.store import ACCEPTED_DIR, shard_file
from mmat.viewer.boxes import result_boxes, sample_boxes
from mmat.viewer.index import Query, RecordIndex
from mmat.viewer.server import ViewerServer


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = write_example_build(tmp_path_factory.mktemp("build"), samples=14, rejects=5, shard_size=6)
    # record 14: an image whose recorded path escapes its root; record 15: an absolute path outside OUT_DIR
    secret = out.parent / "secret.png"
    secret.write_bytes((out / "source_images" / "visual_cot" / "img-000000-0.png").read_bytes())
    escaping = example_sample(0, out / "source_images")
    escaping.id = "attack/escape"
    escaping.images = [ImageRef.model_construct(path="../../secret.png", root=str(out / "source_images"))]
    outside = example_sample(0, out / "source_images")
    outside.id = "attack/absolute"
    outside.images = [ImageRef(path=str(secret))]
    with shard_file(out, ACCEPTED_DIR, 9).open("w") as handle:
        handle.write(escaping.model_dump_json() + "\n" + outside.model_dump_json() + "\n")
    return out


@pytest.fixture(scope="module")
def server(build: Path) -> Iterator[ViewerServer]:
    srv = ViewerServer(build, port=0)
    srv.start_background()
    yield srv
    srv.shutdown()
    srv.server_close()


def _get(server: ViewerServer, path: str, host_header: str | None = None) -> tuple[int, bytes]:
    """A raw request: the path is sent exactly as given (no client-side normalisation)."""
    host, port = server.server_address[:2]
    connection = http.client.HTTPConnection(str(host), int(port), timeout=10)
    connection.putrequest("GET", path, skip_host=host_header is not None, skip_accept_encoding=True)
    if host_header is not None:
        connection.putheader("Host", host_header)
    connection.endheaders()
    response = connection.getresponse()
    body = response.read()
    connection.close()
    return response.status, body


def _json(server: ViewerServer, path: str) -> dict:
    status, body = _get(server, path)
    assert status == 200, body
    return json.loads(body)


def test_binds_loopback_only(server: ViewerServer) -> None:
    assert server.server_address[0] == "127.0.0.1"
    assert server.url.startswith("http://127.0.0.1:")


def test_foreign_host_header_is_refused(server: ViewerServer) -> None:
    port = server.server_address[1]
    assert _get(server, "/api/stats", host_header="evil.example:80")[0] == 403
    assert _get(server, "/api/stats", host_header=f"localhost:{port}")[0] == 200


@pytest.mark.parametrize(
    "path",
    [
        "/../etc/passwd",
        "/static/../../../etc/passwd",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/static/..%2f..%2fpyproject.toml",
        "/image/0/..",
        "/..\\..\\windows",
    ],
)
def test_traversal_is_refused(server: ViewerServer, path: str) -> None:
    status, body = _get(server, path)
    assert status == 403
    assert b"root:" not in body


@pytest.mark.parametrize(
    "path", ["/accepted/shard-00000.jsonl", "/stats.json", "/source_images/x.png", "/api/record/999"]
)
def test_nothing_else_is_served(server: ViewerServer, path: str) -> None:
    assert _get(server, path)[0] == 404


def test_images_only_inside_their_root_or_out_dir(server: ViewerServer) -> None:
    status, body = _get(server, "/image/0/0")
    assert status == 200 and body.startswith(b"\x89PNG")
    index = server.index
    ids = {index.record(n)["id"]: n for n in range(len(index))}
    assert _get(server, f"/image/{ids['attack/escape']}/0")[0] == 403
    assert _get(server, f"/image/{ids['attack/absolute']}/0")[0] == 403
    assert _get(server, "/image/0/7")[0] == 404
    view = _json(server, f"/api/record/{ids['attack/escape']}")
    assert "without '..'" in view["images"][0]["error"]


def test_list_filters_and_pages(server: ViewerServer) -> None:
    everything = _json(server, "/api/list?limit=5")
    assert everything["total"] == 14 + 5 + 2 and len(everything["items"]) == 5
    second = _json(server, "/api/list?limit=5&offset=5")
    assert [i["n"] for i in second["items"]] == list(range(5, 10))
    rejected = _json(server, "/api/list?status=rejected&limit=50")
    assert rejected["total"] == 5 and {i["status"] for i in rejected["items"]} == {"rejected"}
    cheating = _json(server, "/api/list?reason=reasoning_cheating")
    assert cheating["total"] == 2 and all(i["reason"] == "reasoning_cheating" for i in cheating["items"])
    tabmwp = _json(server, "/api/list?source=tabmwp&status=accepted")
    assert tabmwp["total"] == 5 and {i["source"] for i in tabmwp["items"]} == {"tabmwp"}
    rag = _json(server, "/api/list?operator=rag")
    assert rag["total"] > 0 and all("rag" in i["operators"] for i in rag["items"])
    math = _json(server, "/api/list?reflection=math")
    assert math["total"] > 0 and all("math" in i["reflections"] for i in math["items"])
    none = _json(server, "/api/list?reflection=none")
    assert all(not i["reflections"] and i["status"] == "accepted" for i in none["items"])
    good = _json(server, "/api/list?qmin=0.8")
    assert all(i["quality"] >= 0.8 for i in good["items"])
    found = _json(server, "/api/list?q=llava_cot/example/000005")
    assert [i["id"] for i in found["items"]] == ["llava_cot/example/000005"]


def test_text_search_stops_early_on_large_results(build: Path) -> None:
    index = RecordIndex.build(build)
    page = index.query(Query(text="example", limit=3))
    assert len(page.items) == 3 and page.total_exact is False and page.total == 4


def test_index_keeps_offsets_not_records(build: Path) -> None:
    index = RecordIndex.build(build)
    assert len(index) == 21 and len(index.files) == 3 + 1 + 1
    for n in (0, 7, 13, 20):
        raw = index.raw(n)
        assert raw.endswith(b"\n") and json.loads(raw)["id"] == index.record(n)["id"]
    assert index.stats.accepted == 16 and index.stats.rejected == 5
    assert not hasattr(index, "records")


def test_record_view_has_boxes_and_neighbours(server: ViewerServer) -> None:
    view = _json(server, "/api/record/0")
    assert view["status"] == "accepted" and view["previous"] is None and view["next"] == 1
    kinds = {b["kind"] for b in view["boxes"]}
    assert kinds == {"ovd", "face"}
    assert view["images"][0] == {
        "url": "/image/0/0",
        "path": "visual_cot/img-000000-0.png",
        "width": 320,
        "height": 240,
        "error": None,
    }


def test_stats_endpoint(server: ViewerServer) -> None:
    stats = _json(server, "/api/stats")
    assert stats["accepted"] == 16 and stats["rejected"] == 5
    assert set(stats["operator_calls"]) >= {"image_caption", "label_bbox", "face_detection", "rag"}
    assert sum(stats["quality_bins"]) == 16
    assert stats["rejects_by_reason"]["reasoning_cheating"] == 2


def test_boxes_from_every_payload_shape() -> None:
    ovd = result_boxes(
        {"tool": "label_bbox", "payload": {"cat": [[0.1, 0.2, 0.3, 0.4]], "dog": [0.5, 0.5, 0.9, 0.9]}}
    )
    assert [(b["label"], b["normalised"]) for b in ovd] == [("cat", True), ("dog", True)]
    faces = result_boxes({"tool": "face_detection", "payload": [[454.0, 301.0, 883.0, 838.0]]})
    assert faces == [
        {"kind": "face", "label": "face", "box": [454.0, 301.0, 883.0, 838.0], "normalised": False}
    ]
    dicts = result_boxes({"tool": "face_detection", "payload": [{"box": [1, 2, 30, 40], "score": 0.9}]})
    assert dicts[0]["box"] == [1.0, 2.0, 30.0, 40.0]
    nested = result_boxes({"tool": "face_detection", "payload": {"faces": [{"bbox": [5, 5, 50, 60]}]}})
    assert nested[0]["box"] == [5.0, 5.0, 50.0, 60.0]
    from_text = result_boxes({"tool": "label_bbox", "text": "{'sign': [[0.12, 0.3, 0.5, 0.61]]}"})
    assert from_text[0]["label"] == "sign" and from_text[0]["box"] == [0.12, 0.3, 0.5, 0.61]
    face_text = result_boxes(
        {
            "tool": "face detection",
            "text": "There is one face with a coordinate: [454.0, 301.0, 883.0, 838.0]",
        }
    )
    assert face_text[0]["box"] == [454.0, 301.0, 883.0, 838.0]
    assert result_boxes({"tool": "ocr", "payload": [[1, 2, 3, 4]]}) == []
    assert result_boxes({"tool": "label_bbox", "error": "boom", "payload": {"a": [[0, 0, 1, 1]]}}) == []


def test_sample_boxes_dedupes_across_turns(tmp_path: Path) -> None:
    record = example_sample(3, tmp_path).model_dump(mode="json")  # two QA segments, same image
    boxes = sample_boxes(record)
    assert len([b for b in boxes if b["kind"] == "face"]) == 1
    assert len([b for b in boxes if b["kind"] == "ovd"]) == 2


def test_index_cache_is_reused_and_invalidated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    build = write_example_build(tmp_path / "b", samples=5, rejects=2)
    first = RecordIndex.build(build)
    assert (build / ".mmat-viewer" / "index.json").is_file()
    with monkeypatch.context() as patch:
        patch.setattr(RecordIndex, "_add_file", lambda *a, **k: pytest.fail("the cache was not used"))
        cached = RecordIndex.build(build)
    assert cached.offset == first.offset and cached.quality.tobytes() == first.quality.tobytes()
    assert cached.facets() == first.facets()
    assert cached.stats.to_dict() == first.stats.to_dict()
    assert cached.query(Query(operator="rag")).total == first.query(Query(operator="rag")).total
    # a changed shard invalidates the cache
    shard = build / "rejects" / "shard-00000.jsonl"
    shard.write_text(shard.read_text() + shard.read_text().splitlines()[0] + "\n")
    grown = RecordIndex.build(build)
    assert len(grown) == len(first) + 1 and grown.stats.rejected == 3
    # a corrupt cache is ignored, not trusted
    (build / ".mmat-viewer" / "columns.bin").write_bytes(b"\0")
    assert len(RecordIndex.build(build)) == len(grown)
    assert len(RecordIndex.build(build, cache=False)) == len(grown)


def test_boxes_from_the_payloads_of_mmat_tools() -> None:
    # mmat.tools.face: {"faces": [{"box", "score"}], "width", "height"} in pixels
    face = {"faces": [{"box": [454.0, 301.0, 883.0, 838.0], "score": 0.93}], "width": 1000, "height": 900}
    assert result_boxes({"tool": "face_detection", "payload": face}) == [
        {"kind": "face", "label": "face", "box": [454.0, 301.0, 883.0, 838.0], "normalised": False}
    ]
    # mmat.tools.detection: {"boxes": {label: [normalised boxes]}, "scores": {...}, "queries": [...]}
    ovd = {"boxes": {"dog": [[0.12, 0.3, 0.55, 0.91]]}, "scores": {"dog": [0.8]}, "queries": ["dog", "cat"]}
    assert result_boxes({"tool": "label_bbox", "payload": ovd}) == [
        {"kind": "ovd", "label": "dog", "box": [0.12, 0.3, 0.55, 0.91], "normalised": True}
    ]


def test_view_cli_reports_a_busy_port(build: Path) -> None:
    import socket

    from click.testing import CliRunner

    from mmat.cli import cli

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = CliRunner().invoke(cli, ["view", str(build), "--port", str(port)])
    assert result.exit_code != 0
    assert f"cannot listen on 127.0.0.1:{port}" in str(result.exception) + result.output
    assert "pick another with --port" in str(result.exception) + result.output
