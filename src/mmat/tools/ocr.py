"""The ``ocr`` operator: RapidOCR (PP-OCR ONNX models from its wheel) by default, PaddleOCR and
Tesseract as registered alternatives.

Every backend returns text lines with boxes; :func:`render_lines` lays them out in reading order:
lines whose vertical extents overlap form one row, read left to right, and words far apart on a row
(table cells) are joined with ``" | "`` so the cells of one table row stay on one line::

    Employee | Pay period
    Veronica O'Neil | May
    Total earnings | $3,900.00

The payload keeps every line: ``{"lines": [{"text", "box": [x1, y1, x2, y2], "score"}],
"rows": ["Employee | Pay period", ...], "scale": 2.0}`` (boxes in original-image pixels).
"""

from __future__ import annotations

import importlib.util
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from mmat.errors import MissingDependencyError
from mmat.images import load_image
from mmat.schema import ImageRef, ToolResult
from mmat.tools.base import Availability, Tool

if TYPE_CHECKING:
    from PIL import Image

CELL_GAP = 1.2
"""Two boxes on one row further apart than this many text heights are separate cells."""

NO_TEXT = "No text is detected in the image."


@dataclass(frozen=True)
class TextLine:
    """One recognised text box in original-image pixels."""

    text: str
    box: tuple[float, float, float, float]
    score: float

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]

    @property
    def center_y(self) -> float:
        return (self.box[1] + self.box[3]) / 2


def group_rows(lines: Sequence[TextLine]) -> list[list[TextLine]]:
    """Group boxes into rows (top to bottom), each row sorted left to right."""
    rows: list[list[TextLine]] = []
    bands: list[tuple[float, float]] = []
    for line in sorted(lines, key=lambda item: (item.center_y, item.box[0])):
        placed = False
        for index, (top, bottom) in enumerate(bands):
            overlap = min(bottom, line.box[3]) - max(top, line.box[1])
            if overlap > 0.5 * min(bottom - top, line.height) and top <= line.center_y <= bottom:
                rows[index].append(line)
                bands[index] = (min(top, line.box[1]), max(bottom, line.box[3]))
                placed = True
                break
        if not placed:
            rows.append([line])
            bands.append((line.box[1], line.box[3]))
    order = sorted(range(len(rows)), key=lambda i: (bands[i][0] + bands[i][1]) / 2)
    return [sorted(rows[i], key=lambda item: item.box[0]) for i in order]


def render_row(row: Sequence[TextLine], *, cell_gap: float = CELL_GAP) -> str:
    """One row: near boxes joined by a space, far ones (table cells) by ``" | "``."""
    text = row[0].text
    for previous, current in itertools.pairwise(row):
        height = max(1.0, min(previous.height, current.height))
        gap = current.box[0] - previous.box[2]
        text += (" | " if gap > cell_gap * height else " ") + current.text
    return text


def render_lines(lines: Sequence[TextLine], *, cell_gap: float = CELL_GAP) -> tuple[str, list[str]]:
    """The rendered OCR text (rows joined by newlines) and the rows."""
    rows = [render_row(row, cell_gap=cell_gap) for row in group_rows([ln for ln in lines if ln.text.strip()])]
    return ("\n".join(rows) if rows else NO_TEXT), rows


def upscale_factor(image: Image.Image, *, min_side: int, max_factor: float) -> float:
    """How much to enlarge a small image so small text reaches the recogniser's input height."""
    short = min(image.size)
    if short >= min_side or short == 0:
        return 1.0
    return min(max_factor, min_side / short)


class OcrTool(Tool):
    """Shared rendering of every OCR backend; subclasses implement :meth:`recognise`."""

    name: ClassVar[str] = "ocr"
    description: ClassVar[str] = (
        "Reads the text in the image (signs, documents, tables, charts), in reading order; "
        "table cells of one row are separated by ' | '."
    )
    extra: ClassVar[str] = "ocr"
    module: ClassVar[str] = ""

    def __init__(self, *, min_side: int = 600, max_upscale: float = 3.0, cell_gap: float = CELL_GAP) -> None:
        self.min_side = min_side
        self.max_upscale = max_upscale
        self.cell_gap = cell_gap

    def availability(self) -> Availability:
        if self.module and importlib.util.find_spec(self.module) is None:
            return Availability(
                False, f"{self.module} is not installed. Fix: pip install 'mmat[{self.extra}]'"
            )
        return Availability(True)

    def recognise(self, image: Image.Image) -> list[TextLine]:
        """Detect and read the text boxes of an RGB image (pixel coordinates of ``image``)."""
        raise NotImplementedError

    def run(self, images: Sequence[ImageRef], **args: Any) -> ToolResult:
        from PIL import Image

        all_lines: list[dict[str, Any]] = []
        texts: list[str] = []
        rows_out: list[str] = []
        scales: list[float] = []
        for ref in images:
            image = load_image(ref)
            scale = upscale_factor(image, min_side=self.min_side, max_factor=self.max_upscale)
            work = image
            if scale > 1.0:
                size = (round(image.width * scale), round(image.height * scale))
                work = image.resize(size, Image.Resampling.LANCZOS)
            lines = [
                TextLine(ln.text, tuple(v / scale for v in ln.box), ln.score)  # type: ignore[arg-type]
                for ln in self.recognise(work)
            ]
            text, rows = render_lines(lines, cell_gap=self.cell_gap)
            texts.append(text)
            rows_out.extend(rows)
            scales.append(scale)
            all_lines.extend(
                {"text": ln.text, "box": [round(v, 1) for v in ln.box], "score": round(ln.score, 4)}
                for ln in lines
            )
        text = "\n".join(t for t in texts if t != NO_TEXT) or NO_TEXT
        return ToolResult(
            tool=self.name,
            version=self.version,
            payload={
                "lines": all_lines,
                "rows": rows_out,
                "scale": scales[0] if len(scales) == 1 else scales,
            },
            text=text,
        )


def _quad_to_box(points: Any) -> tuple[float, float, float, float]:
    xs = [float(p[0]) for p in points]
    ys = [float(p[1]) for p in points]
    return (min(xs), min(ys), max(xs), max(ys))


class RapidOcrTool(OcrTool):
    """OCR with RapidOCR 3.x and the PP-OCR ONNX detection/recognition models inside its wheel.

    Offline, CPU-only. The line-orientation classifier is off (it flips short table cells), and images
    whose short side is under ``min_side`` pixels are enlarged first so small text is read reliably.

    Example:
        >>> ToolRunner(RunConfig()).run("ocr", [ImageRef(path="table.png")])
    """

    version: ClassVar[str] = "rapidocr3-ppocr-1"
    module: ClassVar[str] = "rapidocr"

    def __init__(self, *, text_score: float = 0.5, threads: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.text_score = text_score
        self.threads = threads
        self._engine: Any = None

    def setup(self) -> None:
        if self._engine is not None:
            return
        try:
            from rapidocr import RapidOCR
        except ImportError as error:
            raise MissingDependencyError("RapidOCR", "ocr", error) from None
        import logging

        params: dict[str, Any] = {
            "Global.use_cls": False,
            "Global.text_score": self.text_score,
            "Global.log_level": "warning",
        }
        if self.threads:
            params["EngineConfig.onnxruntime.intra_op_num_threads"] = self.threads
        self._engine = RapidOCR(params=params)
        logging.getLogger("RapidOCR").setLevel(logging.WARNING)

    def recognise(self, image: Image.Image) -> list[TextLine]:
        import numpy as np

        self.setup()
        output = self._engine(np.asarray(image.convert("RGB")))
        if output.boxes is None or output.txts is None:
            return []
        return [
            TextLine(str(text), _quad_to_box(box), float(score))
            for box, text, score in zip(output.boxes, output.txts, output.scores, strict=False)
        ]


class PaddleOcrTool(OcrTool):
    """OCR with PaddleOCR (the paper's backend); needs ``paddleocr`` and ``paddlepaddle`` and downloads
    its PP-OCR models on first use.

    Example (run config)::

        tools: {backends: {ocr: paddleocr}, options: {paddleocr: {lang: en}}}
    """

    version: ClassVar[str] = "paddleocr-1"
    module: ClassVar[str] = "paddleocr"

    def __init__(self, *, lang: str = "en", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.lang = lang
        self._engine: Any = None

    def availability(self) -> Availability:
        for module in ("paddleocr", "paddle"):
            if importlib.util.find_spec(module) is None:
                return Availability(
                    False, f"{module} is not installed. Fix: pip install paddleocr paddlepaddle"
                )
        return Availability(True)

    def setup(self) -> None:
        if self._engine is None:
            try:
                from paddleocr import PaddleOCR
            except ImportError as error:
                raise MissingDependencyError("PaddleOCR", "ocr", error) from None
            self._engine = PaddleOCR(
                lang=self.lang,
                use_textline_orientation=False,
                use_doc_orientation_classify=False,
                use_doc_unwarping=False,
            )

    def recognise(self, image: Image.Image) -> list[TextLine]:
        import numpy as np

        self.setup()
        lines: list[TextLine] = []
        for page in self._engine.predict(np.asarray(image.convert("RGB"))[:, :, ::-1]):
            data = page.json.get("res", page.json) if hasattr(page, "json") else page
            for text, score, box in zip(
                data["rec_texts"], data["rec_scores"], data["rec_boxes"], strict=False
            ):
                lines.append(TextLine(str(text), tuple(float(v) for v in box), float(score)))  # type: ignore[arg-type]
        return lines


class TesseractOcrTool(OcrTool):
    """OCR with the Tesseract binary through ``pytesseract`` (``apt install tesseract-ocr``)."""

    version: ClassVar[str] = "tesseract-1"
    module: ClassVar[str] = "pytesseract"

    def __init__(self, *, lang: str = "eng", min_confidence: float = 30.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.lang = lang
        self.min_confidence = min_confidence

    def availability(self) -> Availability:
        import shutil

        if importlib.util.find_spec("pytesseract") is None:
            return Availability(False, "pytesseract is not installed. Fix: pip install pytesseract")
        if shutil.which("tesseract") is None:
            return Availability(False, "the tesseract binary is not on PATH. Fix: apt install tesseract-ocr")
        return Availability(True)

    def recognise(self, image: Image.Image) -> list[TextLine]:
        import pytesseract

        data = pytesseract.image_to_data(image, lang=self.lang, output_type=pytesseract.Output.DICT)
        lines: list[TextLine] = []
        for text, conf, x, y, w, h in zip(
            data["text"], data["conf"], data["left"], data["top"], data["width"], data["height"], strict=False
        ):
            if str(text).strip() and float(conf) >= self.min_confidence:
                lines.append(
                    TextLine(str(text), (float(x), float(y), float(x + w), float(y + h)), float(conf) / 100)
                )
        return lines
