"""The MMAT-1M release layout: ``dataset_qa_rr_{split}_all_RR_sys.jsonl`` and ``..._ORR.jsonl``.

The key names of the released rows are unknown (SPEC §2), so the importer detects them per row:
``messages|conversations``, ``role|from``, ``content|value``, ``images|image``. It also records the
role spellings, the top-level key order and the JSON style, so importing then exporting a file
reproduces it byte for byte.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from mmat.errors import RecordError, WireFormatError
from mmat.export.base import Exporter
from mmat.schema import QA, ImageRef, OrrSample, OrrSegment, Sample, Segment, TurnKind
from mmat.wire import (
    SUMMARIZE_PREFIX,
    parse_orr_answer,
    parse_orr_user,
    parse_question,
    parse_rr_messages,
    render_rr_messages,
)

Kind = Literal["rr", "orr"]
_ROLE_SPELLINGS = {
    "human": "user",
    "gpt": "assistant",
    "user": "user",
    "assistant": "assistant",
    "system": "system",
}
_JSON_STYLES = [
    {"ensure_ascii": False, "separators": (", ", ": ")},
    {"ensure_ascii": True, "separators": (", ", ": ")},
    {"ensure_ascii": False, "separators": (",", ":")},
    {"ensure_ascii": True, "separators": (",", ":")},
]


class ReleaseLayout(BaseModel):
    """How one released row is keyed and spelled."""

    model_config = ConfigDict(extra="forbid")

    messages_key: Literal["messages", "conversations"] = "messages"
    role_key: Literal["role", "from"] = "role"
    content_key: Literal["content", "value"] = "content"
    images_key: Literal["images", "image"] | None = "images"
    images_as_list: bool = True
    role_names: dict[str, str] = Field(
        default_factory=lambda: {"system": "system", "user": "user", "assistant": "assistant"}
    )
    key_order: list[str] = Field(default_factory=list)
    message_key_order: list[str] = Field(default_factory=list)
    json_style: int = 0


def _pick(row: dict[str, Any], names: tuple[str, ...], what: str, location: str) -> str:
    for name in names:
        if name in row:
            return name
    raise RecordError(
        "missing_field",
        f"row has no {what} key (looked for {', '.join(names)}); is this an MMAT-1M RR/ORR file?",
        location=location,
    )


def detect_layout(row: dict[str, Any], line: str, location: str = "") -> ReleaseLayout:
    """Detect the key layout and JSON style of one raw row."""
    messages_key = _pick(row, ("messages", "conversations"), "messages", location)
    messages = row[messages_key]
    if not isinstance(messages, list) or not messages or not isinstance(messages[0], dict):
        raise RecordError(
            "bad_messages", f"{messages_key!r} must be a non-empty list of objects", location=location
        )
    first = messages[0]
    role_key = _pick(first, ("role", "from"), "role", location)
    content_key = _pick(first, ("content", "value"), "content", location)
    images_key = next((k for k in ("images", "image") if k in row), None)
    role_names = {"system": "system", "user": "user", "assistant": "assistant"}
    for message in messages:
        spelled = message.get(role_key)
        if spelled not in _ROLE_SPELLINGS:
            raise RecordError(
                "bad_role",
                f"unknown role {spelled!r}; expected system, user/human or assistant/gpt",
                location=location,
            )
        role_names[_ROLE_SPELLINGS[spelled]] = spelled
    layout = ReleaseLayout(
        messages_key=messages_key,  # type: ignore[arg-type]
        role_key=role_key,  # type: ignore[arg-type]
        content_key=content_key,  # type: ignore[arg-type]
        images_key=images_key,  # type: ignore[arg-type]
        images_as_list=not (images_key and isinstance(row[images_key], str)),
        role_names=role_names,
        key_order=list(row),
        message_key_order=list(first),
    )
    for index, style in enumerate(_JSON_STYLES):
        if json.dumps(row, **style) == line:  # type: ignore[arg-type]
            layout.json_style = index
            break
    return layout


def _kind_of(messages: list[tuple[str, str]]) -> Kind:
    for role, content in messages:
        if role == "assistant":
            return "orr" if "<ANSWER>" in content.upper() and "<SIGNAL>" not in content.upper() else "rr"
    return "rr"


def row_to_sample(row: dict[str, Any], line: str, *, row_id: str, location: str = "") -> Sample:
    """Turn one released row into a sample holding its trajectory or ORR form."""
    layout = detect_layout(row, line, location)
    raw_messages = row[layout.messages_key]
    messages = [(_ROLE_SPELLINGS[m[layout.role_key]], str(m[layout.content_key])) for m in raw_messages]
    images_value = row.get(layout.images_key) if layout.images_key else None
    image_paths = [images_value] if isinstance(images_value, str) else list(images_value or [])
    extra = {k: v for k, v in row.items() if k not in (layout.messages_key, layout.images_key)}
    kind = _kind_of(messages)
    try:
        if kind == "rr":
            trajectory = parse_rr_messages(messages)
            qas = [_rr_qa(segment) for segment in trajectory.segments]
            content: dict[str, Any] = {"trajectory": trajectory}
        else:
            orr = _parse_orr(messages)
            qas = [
                QA(
                    qa_id=s.qa_id,
                    question=s.user,
                    templated_question=parse_orr_user(s.user)[0],
                    answer=s.answer,
                )
                for s in orr.segments
            ]
            content = {"orr": orr}
    except WireFormatError as error:
        raise RecordError("bad_wire_format", str(error), record_id=row_id, location=location) from None
    return Sample(
        id=row_id,
        source="mmat1m",
        license="see the licence of each MMAT-1M source dataset",
        images=[ImageRef(path=p) for p in image_paths] or [ImageRef(path="(none)")],
        qas=qas,
        metadata={
            "release": {"kind": kind, "layout": layout.model_dump(), "extra": extra, "images": images_value}
        },
        **content,
    )


def _rr_qa(segment: Segment) -> QA:
    question_turn = segment.turns[0]
    templated, _ = parse_question(question_turn.content)
    summarize = next((t for t in segment.turns if t.kind is TurnKind.SUMMARIZE), None)
    answer = next((t.content for t in segment.turns if t.kind is TurnKind.ANSWER), "")
    raw_question = summarize.content[len(SUMMARIZE_PREFIX) :] if summarize else templated
    return QA(qa_id=segment.qa_id, question=raw_question, templated_question=templated, answer=answer)


def _parse_orr(messages: list[tuple[str, str]]) -> OrrSample:
    system = messages[0][1] if messages and messages[0][0] == "system" else ""
    body = messages[1:] if system else messages
    segments: list[OrrSegment] = []
    for index in range(0, len(body) - 1, 2):
        (user_role, user), (assistant_role, assistant) = body[index], body[index + 1]
        if (user_role, assistant_role) != ("user", "assistant"):
            raise WireFormatError(f"ORR message {index}: expected a user then an assistant turn", user)
        parsed = parse_orr_answer(assistant)
        _, blocks = parse_orr_user(user)
        segments.append(
            OrrSegment(
                qa_id=str(len(segments)),
                user=user,
                assistant=assistant,
                api_blocks=blocks,
                thought=parsed.thought,
                answer=parsed.answer,
            )
        )
    if len(body) % 2 or not segments:
        raise WireFormatError(
            "an ORR row holds user/assistant pairs after an optional system turn", str(messages)
        )
    return OrrSample(system=system, segments=segments)


def sample_to_row(sample: Sample, kind: Kind, *, layout: ReleaseLayout | None = None) -> str:
    """Render one sample as a released row (one JSON line without the newline)."""
    release = sample.metadata.get("release", {})
    if layout is None:
        layout = ReleaseLayout.model_validate(release["layout"]) if "layout" in release else ReleaseLayout()
    if kind == "rr":
        if sample.trajectory is None:
            raise RecordError("no_trajectory", "sample has no RR trajectory to export", record_id=sample.id)
        messages = render_rr_messages(sample.trajectory)
    else:
        if sample.orr is None:
            raise RecordError(
                "no_orr", "sample has no ORR form; enable the Integration stage", record_id=sample.id
            )
        messages = [("system", sample.orr.system)] if sample.orr.system else []
        for segment in sample.orr.segments:
            messages += [("user", segment.user), ("assistant", segment.assistant)]
    message_keys = layout.message_key_order or [layout.role_key, layout.content_key]
    rendered = []
    for role, content in messages:
        values: dict[str, str] = {
            layout.role_key: layout.role_names.get(role, role),
            layout.content_key: content,
        }
        rendered.append({k: values[k] for k in message_keys})
    if "images" in release:
        images: Any = release["images"]
    else:
        paths = [ref.path for ref in sample.images]
        images = paths if layout.images_as_list else paths[0]
    parts: dict[str, Any] = dict(release["extra"]) if "extra" in release else {"id": sample.id}
    parts[layout.messages_key] = rendered
    if layout.images_key:
        parts[layout.images_key] = images
    order = layout.key_order or list(parts)
    row = {key: parts[key] for key in order if key in parts}
    row.update({k: v for k, v in parts.items() if k not in row})
    return json.dumps(row, **_JSON_STYLES[layout.json_style])  # type: ignore[arg-type]


def read_release(path: str | Path) -> Iterator[Sample | RecordError]:
    """Stream a released RR or ORR file; a bad row yields a RecordError instead of stopping."""
    path = Path(path)
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            line = line.rstrip("\n")
            location = f"{path}:{number}"
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                yield RecordError("bad_json", f"line is not JSON: {error}", location=location)
                continue
            if not isinstance(row, dict):
                yield RecordError("bad_json", "line is JSON but not an object", location=location)
                continue
            row_id = str(row.get("id", f"{path.stem}:{number}"))
            try:
                yield row_to_sample(row, line, row_id=row_id, location=location)
            except RecordError as error:
                yield error


def write_release(samples: Iterable[Sample], path: str | Path, kind: Kind) -> int:
    """Write samples as a released RR or ORR file; returns the number of rows."""
    count = 0
    with Path(path).open("w", encoding="utf-8") as handle:
        for sample in samples:
            handle.write(sample_to_row(sample, kind) + "\n")
            count += 1
    return count


class ReleaseExporter(Exporter):
    """Writes the MMAT-1M release files: ``dataset_qa_rr_{split}_all_RR_sys.jsonl`` and ``..._ORR.jsonl``.

    Example:
        >>> ReleaseExporter().export(samples, Path("out/mmat1m"))
    """

    name: ClassVar[str] = "mmat1m"
    description: ClassVar[str] = "the MMAT-1M release layout (RR with system prompt, and ORR)"

    def export(self, samples: Iterable[Sample], out_dir: Path) -> list[Path]:
        out_dir.mkdir(parents=True, exist_ok=True)
        handles: dict[Path, Any] = {}
        try:
            for sample in samples:
                split = sample.split if sample.split in ("train", "val") else "train"
                for kind, suffix, present in (
                    ("rr", "RR_sys", sample.trajectory is not None),
                    ("orr", "ORR", sample.orr is not None),
                ):
                    if not present:
                        continue
                    target = out_dir / f"dataset_qa_rr_{split}_all_{suffix}.jsonl"
                    if target not in handles:
                        handles[target] = target.open("w", encoding="utf-8")
                    handles[target].write(sample_to_row(sample, kind) + "\n")  # type: ignore[arg-type]
        finally:
            for handle in handles.values():
                handle.close()
        return sorted(handles)
