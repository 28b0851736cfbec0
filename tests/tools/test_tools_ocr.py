"""OCR on the real TabMWP table images: cells found, rows kept together, reading order."""

from __future__ import annotations

from mmat.schema import ImageRef
from mmat.tools.ocr import NO_TEXT, TextLine, render_lines


def test_table_cells_of_one_row_stay_on_one_line(rapid_ocr, table_ref) -> None:
    result = rapid_ocr.run([table_ref("10131")])
    assert result.ok, result.error
    rows = result.text.split("\n")
    # 10131.png: "Employee | Pay period" / "Veronica O'Neil | May" / ... / "Pay after taxes | ?"
    assert rows[0] == "Employee | Pay period"
    assert any(row.endswith("O'Neil | May") for row in rows)
    assert "Total earnings | $3,900.00" in rows
    assert "Federal income tax | $504.30" in rows
    assert rows[-1] == "Pay after taxes | ?"
    lines = result.payload["lines"]
    assert {ln["text"] for ln in lines} >= {"Employee", "May", "$504.30"}
    x1, y1, x2, y2 = next(ln["box"] for ln in lines if ln["text"] == "Employee")
    assert 0 <= x1 < x2 <= 400 and 0 <= y1 < y2 <= 241  # original-image pixels, not upscaled ones


def test_ocr_finds_every_cell_of_a_table(rapid_ocr, table_ref, tabmwp_problems) -> None:
    pid = "14153"
    problem = tabmwp_problems[pid]
    result = rapid_ocr.run([table_ref(pid)])
    for row in problem["table"].split("\n"):
        assert " | ".join(cell.strip() for cell in row.split("|")) in result.text.split("\n")


def test_blank_image_renders_no_text(rapid_ocr, tmp_path) -> None:
    from PIL import Image

    Image.new("RGB", (120, 80), "white").save(tmp_path / "blank.png")
    result = rapid_ocr.run([ImageRef(path=str(tmp_path / "blank.png"))])
    assert result.text == NO_TEXT and result.payload["lines"] == []


def test_layout_groups_rows_and_separates_far_cells() -> None:
    lines = [
        TextLine("Price", (200, 10, 250, 30), 1.0),
        TextLine("Item", (10, 12, 50, 31), 1.0),
        TextLine("red", (10, 50, 40, 70), 1.0),
        TextLine("apple", (45, 51, 90, 70), 1.0),
        TextLine("$2", (200, 49, 220, 69), 1.0),
    ]
    text, rows = render_lines(lines)
    assert rows == ["Item | Price", "red apple | $2"]
    assert text == "Item | Price\nred apple | $2"
