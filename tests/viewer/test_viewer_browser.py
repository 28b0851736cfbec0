"""The viewer in a real headless Debian chromium, driven by Playwright (never `playwright install`).

`make browser` installs /usr/bin/chromium (`make test` runs it when chromium is missing).
Screenshots are written under the test's tmp output directory.
"""

from __future__ import annotations

import http.client
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mmat.export.example_build import IMAGE_SIZE, write_example_build
from mmat.viewer.server import ViewerServer

CHROMIUM = os.environ.get("MMAT_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

pytestmark = pytest.mark.heavy


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ViewerServer]:
    build = write_example_build(tmp_path_factory.mktemp("build"), samples=60, rejects=9)
    srv = ViewerServer(build, port=0)
    srv.start_background()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install 'mmat[browser-tests]'")
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"{CHROMIUM} is missing; run `make browser` (apt-get install chromium)")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any, server: ViewerServer) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    tab.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    tab.goto(server.url)
    tab.wait_for_selector("#list-table tbody tr.record-row")
    yield tab
    context.close()
    assert errors == [], errors


def _rows(page: Any) -> list[dict[str, str]]:
    result: list[dict[str, str]] = page.eval_on_selector_all(
        "#list-table tbody tr.record-row",
        "rows => rows.map(r => ({n: r.dataset.n, id: r.cells[1].textContent, source: r.cells[2].textContent,"
        " status: r.cells[3].textContent}))",
    )
    return result


def _wait_list(page: Any, info: str) -> None:
    page.wait_for_function(
        "text => document.getElementById('page-info').textContent.includes(text)", arg=info
    )


def test_list_filter_and_paging(page: Any, tmp_path: Path) -> None:
    assert len(_rows(page)) == 50
    assert page.text_content("#page-info") == "1–50 of 69"
    assert "60 accepted · 9 rejected" in page.text_content("#build-info")
    page.click("#next")
    _wait_list(page, "51–69 of 69")
    assert [r["n"] for r in _rows(page)][:2] == ["50", "51"]
    page.screenshot(path=str(tmp_path / "list-page2.png"), full_page=True)

    page.select_option("#f-source", "tabmwp")
    page.select_option("#f-status", "accepted")
    page.click("#apply")
    _wait_list(page, "1–20 of 20")
    rows = _rows(page)
    assert {r["source"] for r in rows} == {"tabmwp"} and {r["status"] for r in rows} == {"accepted"}

    page.click("#reset")
    _wait_list(page, "of 69")
    page.select_option("#f-status", "rejected")
    page.select_option("#f-reason", "low_quality")
    page.click("#apply")
    _wait_list(page, "1–3 of 3")
    assert {r["status"] for r in _rows(page)} == {"rejected: low_quality"}

    page.click("#reset")
    _wait_list(page, "of 69")
    page.fill("#f-q", "visual_cot/example/000012")
    page.click("#apply")
    _wait_list(page, "1–1 of 1")
    assert [r["id"] for r in _rows(page)] == ["visual_cot/example/000012"]
    page.screenshot(path=str(tmp_path / "list-filtered.png"), full_page=True)
    assert (tmp_path / "list-filtered.png").stat().st_size > 1000


def test_open_sample_draws_boxes_and_turns(page: Any, server: ViewerServer, tmp_path: Path) -> None:
    # sample 1 has a reflection; open it by clicking its row
    page.click("#list-table tbody tr.record-row[data-n='1']")
    page.wait_for_selector("svg.image-boxes rect.box-face")
    assert page.text_content("#sample-id") == "tabmwp/example/000001"
    svg = page.locator("svg.image-boxes").first
    assert svg.get_attribute("viewBox") == f"0 0 {IMAGE_SIZE[0]} {IMAGE_SIZE[1]}"
    assert page.locator("svg.image-boxes image").first.evaluate("i => i.getAttribute('href')") == "/image/1/0"
    record = server.index.record(1)
    face_payload = next(
        r["payload"]
        for t in record["trajectory"]["segments"][0]["turns"]
        for r in t.get("results", [])
        if r["tool"] == "face_detection"
    )
    ovd_payload = next(
        r["payload"]
        for t in record["trajectory"]["segments"][0]["turns"]
        for r in t.get("results", [])
        if r["tool"] == "label_bbox"
    )
    face = page.locator("rect.box-face").first
    x1, y1, x2, y2 = face_payload[0]
    assert float(face.get_attribute("x")) == pytest.approx(x1)
    assert float(face.get_attribute("y")) == pytest.approx(y1)
    assert float(face.get_attribute("width")) == pytest.approx(x2 - x1)
    assert float(face.get_attribute("height")) == pytest.approx(y2 - y1)
    ovd = page.locator("rect.box-ovd")
    assert ovd.count() == sum(len(boxes) for boxes in ovd_payload.values())
    labels = sorted(ovd.evaluate_all("rs => rs.map(r => r.dataset.label)"))
    assert labels == sorted(ovd_payload)
    first_label = ovd.first.get_attribute("data-label")
    nx1, ny1, _, _ = ovd_payload[first_label][0]
    assert float(ovd.first.get_attribute("x")) == pytest.approx(nx1 * IMAGE_SIZE[0])
    assert float(ovd.first.get_attribute("y")) == pytest.approx(ny1 * IMAGE_SIZE[1])
    # the image itself loaded from the server
    assert page.evaluate("fetch('/image/1/0').then(r => r.status)") == 200
    # every turn is shown, reflection turns highlighted, operator calls and results visible
    turns = sum(len(s["turns"]) for s in record["trajectory"]["segments"])
    assert page.locator(".rr-pane .turn").count() == turns
    assert page.locator(".rr-pane .turn.turn-reflection").count() == 3
    assert page.locator(".rr-pane .turn.turn-reflection.kind-reflection_prompt").count() == 1
    assert page.locator(".rr-pane .op-call").count() >= 3
    assert page.locator(".rr-pane .result[data-tool='face_detection']").count() == 1
    # ORR beside RR
    assert page.locator(".panes > .orr-pane").count() == 1
    assert "<ANSWER>The answer is:" in page.text_content(".orr-pane")
    page.screenshot(path=str(tmp_path / "sample.png"), full_page=True)
    assert (tmp_path / "sample.png").stat().st_size > 5000


def test_rejected_sample_shows_reason(page: Any) -> None:
    page.goto(page.url.split("#")[0] + "#/sample/62")
    page.wait_for_selector(".reject-detail")
    assert "reason: " in page.text_content(".reject-detail")


def test_statistics_page_charts(page: Any, server: ViewerServer, tmp_path: Path) -> None:
    page.click("#nav-stats")
    page.wait_for_selector("#chart-quality rect.bar", state="attached")
    stats = server.index.stats
    for chart in ("chart-operators", "chart-steps", "chart-reflection", "chart-rejects", "chart-quality"):
        assert page.locator(f"#{chart} rect.bar").count() > 0, chart
    operators = page.locator("#chart-operators rect.bar").evaluate_all(
        "rs => Object.fromEntries(rs.map(r => [r.dataset.label, Number(r.dataset.value)]))"
    )
    assert operators == dict(stats.operator_calls)
    rejects = page.locator("#chart-rejects rect.bar").evaluate_all(
        "rs => Object.fromEntries(rs.map(r => [r.dataset.label, Number(r.dataset.value)]))"
    )
    assert rejects == dict(stats.rejects_by_reason)
    quality = page.locator("#chart-quality rect.bar").evaluate_all(
        "rs => rs.map(r => Number(r.dataset.value))"
    )
    assert sum(quality) == 60
    assert "tabmwp" in page.text_content("#stats-numbers")
    page.screenshot(path=str(tmp_path / "stats.png"), full_page=True)


def test_traversal_refused_from_the_served_origin(server: ViewerServer) -> None:
    host, port = server.server_address[:2]
    for path in ("/../etc/passwd", "/static/../../../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd"):
        connection = http.client.HTTPConnection(str(host), int(port), timeout=10)
        connection.request("GET", path)
        response = connection.getresponse()
        assert response.status in (403, 404), path
        assert b"root:" not in response.read()
        connection.close()
