"""Boxes to draw on a sample's images: open-vocabulary detection (``label_bbox``) and face detection.

Operator payloads are read defensively because backends differ: ``label_bbox`` is usually a dict
label -> list of normalised ``[x1, y1, x2, y2]``, face detection a list of pixel boxes, but lists of
``{"box"|"bbox"|"xyxy": [...], "label": ...}`` dicts and a single box are accepted too. When a result
has no payload, the rendered text is parsed instead (the Python-repr dict of ``label_bbox``, the
bracketed coordinates of face detection).
"""

from __future__ import annotations

import ast
import re
from typing import Any

OVD_TOOLS = {"label_bbox", "ovd", "grounding_dino", "open_vocabulary_detection", "detection"}
FACE_TOOLS = {"face_detection", "face", "face detection"}
_BOX_KEYS = ("box", "bbox", "xyxy", "coordinate", "coordinates", "rect")
_NUMBERS = re.compile(
    r"\[\s*(-?\d+(?:\.\d+)?)\s*,\s*(-?\d+(?:\.\d+)?)\s*,\s*(-?\d+(?:\.\d+)?)\s*,\s*(-?\d+(?:\.\d+)?)\s*\]"
)


def _as_box(value: Any) -> list[float] | None:
    if (
        isinstance(value, (list, tuple))
        and len(value) == 4
        and all(isinstance(v, (int, float)) for v in value)
    ):
        return [float(v) for v in value]
    return None


def _from_payload(payload: Any, default_label: str) -> list[tuple[str, list[float]]]:
    out: list[tuple[str, list[float]]] = []
    box = _as_box(payload)
    if box is not None:
        return [(default_label, box)]
    if isinstance(payload, dict):
        for key in _BOX_KEYS:
            if key in payload:
                found = _as_box(payload[key])
                if found is not None:
                    return [(str(payload.get("label", payload.get("name", default_label))), found)]
        for key in ("boxes", "faces", "detections", "objects", "results"):
            if key in payload:
                return _from_payload(payload[key], default_label)
        for label, value in payload.items():
            out += _from_payload(value, str(label))
        return out
    if isinstance(payload, (list, tuple)):
        for item in payload:
            out += _from_payload(item, default_label)
    return out


def _from_text(tool_kind: str, text: str) -> list[tuple[str, list[float]]]:
    if tool_kind == "ovd":
        start, end = text.find("{"), text.rfind("}")
        if 0 <= start < end:
            try:
                return _from_payload(ast.literal_eval(text[start : end + 1]), "object")
            except (ValueError, SyntaxError, MemoryError, RecursionError):
                pass
    return [
        ("face" if tool_kind == "face" else "object", [float(g) for g in m.groups()])
        for m in _NUMBERS.finditer(text)
    ]


def tool_kind(tool: str) -> str | None:
    """``ovd`` or ``face`` for the operators whose results are boxes, else None."""
    name = tool.strip().lower()
    if name in OVD_TOOLS:
        return "ovd"
    if name in FACE_TOOLS or name.replace(" ", "_") in FACE_TOOLS:
        return "face"
    return None


def result_boxes(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The boxes of one stored ToolResult (a dict), each ``{kind, label, box, normalised}``."""
    kind = tool_kind(str(result.get("tool", "")))
    if kind is None or result.get("error"):
        return []
    payload = result.get("payload")
    found = _from_payload(payload, kind if kind == "face" else "object") if payload is not None else []
    if not found:
        found = _from_text(kind, str(result.get("text", "")))
    boxes = []
    for label, box in found:
        normalised = all(0.0 <= v <= 1.0 for v in box) if kind == "face" else all(v <= 1.5 for v in box)
        boxes.append({"kind": kind, "label": label, "box": box, "normalised": normalised})
    return boxes


def sample_boxes(record: dict[str, Any]) -> list[dict[str, Any]]:
    """Every distinct box in a stored sample's trajectory, with the segment and turn it came from.

    A payload may name the image it refers to (``image_index``); otherwise boxes belong to image 0.
    """
    seen: set[tuple[Any, ...]] = set()
    out: list[dict[str, Any]] = []
    segments = (record.get("trajectory") or {}).get("segments") or []
    for s, segment in enumerate(segments):
        for t, turn in enumerate(segment.get("turns") or []):
            for result in turn.get("results") or []:
                payload = result.get("payload")
                image = payload.get("image_index", 0) if isinstance(payload, dict) else 0
                for box in result_boxes(result):
                    key = (box["kind"], box["label"], tuple(box["box"]), image)
                    if key in seen:
                        continue
                    seen.add(key)
                    out.append(
                        {**box, "image": image if isinstance(image, int) else 0, "segment": s, "turn": t}
                    )
    return out
