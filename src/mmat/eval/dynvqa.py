"""Loading Dyn-VQA (OmniSearch) JSONL files.

Each line: ``{"image_url", "question", "question_id", "answer": [...], "gloden_query"}``; newer
releases spell the last key ``golden_query``; both are read. Gold answers may be numbers. The
*query* setting asks the question as written (it refers to the image: "his third child"); the
*golden* setting asks the golden query, which names the entity ("Leonardo DiCaprio's third child").

Images are URLs in the release. Download them once into a folder and pass it as ``image_root``:
an image is looked up there as the URL's path, then as ``<parent folder>/<file name>``, then as the
file name alone. Without ``image_root`` the URL itself is passed on: the model client sends it as
an ``image_url`` (servers such as vLLM fetch it), but local operators (OCR, detection) cannot read
it and report that in their observation, so download the images for RR and ORR runs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

from mmat.errors import RecordError
from mmat.eval.items import EvalItem
from mmat.schema import ImageRef

DynVqaSetting = Literal["query", "golden"]


def detect_language(path: Path, question_id: str) -> str:
    """``zh`` or ``en``, from the question id prefix or the file name."""
    if question_id.lower().startswith("zh") or "_zh" in path.name.lower():
        return "zh"
    return "en"


def local_image(url: str, image_root: Path) -> ImageRef | None:
    """The downloaded copy of ``url`` under ``image_root``, if there is one."""
    parts = [p for p in urlparse(url).path.split("/") if p]
    candidates = []
    if parts:
        candidates = [Path(*parts), Path(*parts[-2:]), Path(parts[-1])]
    for candidate in candidates:
        full = image_root / candidate
        if full.is_file():
            return ImageRef(path=str(full.resolve()))
    return None


def load_dynvqa(
    path: str | Path,
    *,
    setting: DynVqaSetting = "query",
    lang: str | None = None,
    image_root: str | Path | None = None,
    bench: str = "DynVQA",
) -> list[EvalItem]:
    """Read a Dyn-VQA JSONL file into items (``meta`` holds ``lang``, ``golden_query``, ``gold_raw``).

    Raises:
        RecordError: a line is not JSON or lacks ``question``/``answer``; the location says which.
    """
    path = Path(path)
    root = Path(image_root) if image_root else None
    items: list[EvalItem] = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise RecordError("bad_json", f"not a JSON line ({error})", location=where) from None
            missing = [key for key in ("question", "answer") if key not in row]
            if missing:
                raise RecordError(
                    "missing_field",
                    f"Dyn-VQA rows need 'question' and 'answer'; this one lacks {missing}",
                    location=where,
                )
            golden = row.get("golden_query", row.get("gloden_query")) or ""
            if setting == "golden" and not golden:
                raise RecordError(
                    "missing_field",
                    "the golden setting needs 'golden_query' (or the original 'gloden_query')",
                    location=where,
                )
            qid = str(row.get("question_id", number))
            language = lang or detect_language(path, qid)
            golds = row["answer"] if isinstance(row["answer"], list) else [row["answer"]]
            images: list[ImageRef] = []
            url = str(row.get("image_url") or "")
            if url:
                found = local_image(url, root) if root else None
                images = [found or ImageRef(path=url)]
            question = str(row["question"])
            items.append(
                EvalItem(
                    bench=bench,
                    index=qid,
                    question=question,
                    prompt=str(golden) if setting == "golden" else question,
                    images=images,
                    answer=str(golds[0]) if golds else "",
                    answers=[str(g) for g in golds],
                    meta={"lang": language, "golden_query": golden, "gold_raw": golds, "setting": setting},
                )
            )
    return items
