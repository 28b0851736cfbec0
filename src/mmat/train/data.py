"""Training rows in, token ids and assistant-only labels out.

Input is the ms-swift export (``mmat.export.swift``): JSONL rows
``{"messages": [{"role", "content", ["loss"]}...], "images": [path...]}`` with one ``<image>``
placeholder per image in user content. A row becomes a chat-template conversation (images as
``{"type": "image"}`` parts), the processor renders and tokenises it, and every token outside an
assistant message gets the label ``-100``: the system prompt, the question, the operator observations,
the no-tool and reflection prompts and the summarise turn are context, never targets. An assistant
message whose row sets ``"loss": false`` is context too.

Assistant spans are found through the chat template itself: rendering the conversation up to message
``i`` with the generation prompt gives where message ``i`` starts, rendering up to and including it
gives where it ends (its end-of-turn token included, so the model learns to stop). The processor then
expands image placeholders into many tokens; labels are mapped onto the expanded ids by aligning the
text tokens after the images (checked token by token), or by tokenising prefixes when an assistant
turn precedes an image.
"""

from __future__ import annotations

import json
import logging
from array import array
from bisect import bisect_left
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from mmat.errors import ConfigError, MmatError, RecordError

log = logging.getLogger(__name__)

IGNORE_INDEX = -100
IMAGE_PLACEHOLDER = "<image>"


class ChatTemplateError(MmatError):
    """A model's chat template cannot be used to find assistant turns."""

    exit_code = 2


@dataclass
class TrainRow:
    """One training conversation: messages (``role``, ``content``, trained?) and resolved image paths."""

    messages: list[tuple[str, str, bool]]
    images: list[Path] = field(default_factory=list)
    row_id: str | None = None


def export_files(data: str | Path, split: str = "train") -> list[Path]:
    """The JSONL files of an export: a file, a folder of shards, or an export root with ``split/``."""
    path = Path(data)
    if path.is_file():
        return [path]
    if path.is_dir():
        for folder in (path / split, path):
            files = sorted(folder.glob("*.jsonl"))
            if files:
                return files
    raise ConfigError(
        f"--data {data}: no JSONL rows found (looked for the file, {path}/{split}/*.jsonl and {path}/*.jsonl). "
        "Fix: export the dataset first, e.g. with mmat's ms-swift exporter, and pass its folder or a .jsonl file"
    )


def _image_bases(files: Sequence[Path], data: str | Path) -> list[Path]:
    root = Path(data)
    bases = [root if root.is_dir() else root.parent]
    for file in files:
        bases += [file.parent, file.parent.parent]
    unique: list[Path] = []
    for base in bases:
        if base not in unique:
            unique.append(base)
    return unique


def parse_row(row: dict[str, Any], *, bases: Sequence[Path] = (), location: str = "") -> TrainRow:
    """Check one exported row and resolve its image paths.

    Raises:
        RecordError: a missing field, an unknown role, a placeholder count that differs from the
            number of images, an image that does not exist, or no assistant message to learn from.
    """
    row_id = str(row["id"]) if "id" in row else None
    messages = row.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RecordError(
            "missing_field", "row has no 'messages' list", record_id=row_id, location=location or None
        )
    parsed: list[tuple[str, str, bool]] = []
    for message in messages:
        role, content = message.get("role"), message.get("content")
        if role not in ("system", "user", "assistant") or not isinstance(content, str):
            raise RecordError(
                "bad_message",
                f"message {message!r:.120} needs role system|user|assistant and a string content",
                record_id=row_id,
                location=location or None,
            )
        parsed.append((role, content, role == "assistant" and bool(message.get("loss", True))))
    if not any(trained for _, _, trained in parsed):
        raise RecordError(
            "no_target",
            "row has no assistant message to train on",
            record_id=row_id,
            location=location or None,
        )
    raw_images = row.get("images") or []
    if isinstance(raw_images, str):
        raw_images = [raw_images]
    placeholders = sum(content.count(IMAGE_PLACEHOLDER) for _, content, _ in parsed)
    if placeholders != len(raw_images):
        raise RecordError(
            "image_placeholders",
            f"row has {placeholders} <image> placeholders but {len(raw_images)} images; "
            "re-export it with mmat's ms-swift exporter, which places one placeholder per image",
            record_id=row_id,
            location=location or None,
        )
    images: list[Path] = []
    for raw in raw_images:
        if isinstance(raw, dict):
            raw = raw.get("path") or raw.get("image")
        candidate = Path(str(raw))
        if not candidate.is_absolute():
            found = [base / candidate for base in bases if (base / candidate).is_file()]
            candidate = found[0] if found else candidate
        if not candidate.is_file():
            raise RecordError(
                "missing_image",
                f"image {raw} not found (relative paths are resolved against the export folder)",
                record_id=row_id,
                location=location or None,
            )
        images.append(candidate)
    return TrainRow(parsed, images, row_id)


def read_rows(data: str | Path, split: str = "train") -> Iterator[TrainRow]:
    """Yield the checked rows of an export; bad rows are logged and skipped."""
    files = export_files(data, split)
    bases = _image_bases(files, data)
    for file in files:
        with file.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                location = f"{file}:{number}"
                try:
                    yield parse_row(json.loads(line), bases=bases, location=location)
                except json.JSONDecodeError as error:
                    log.warning("%s: not JSON (%s); row skipped", location, error)
                except RecordError as error:
                    log.warning("%s; row skipped", error)


class ExportRows:
    """Random access to the rows of an export without holding them in memory.

    One pass records where each line starts (a few bytes per row, so a million-row export indexes in
    seconds and megabytes); a row is read, parsed and checked when it is asked for, and a bad row
    raises :class:`~mmat.errors.RecordError` then (the dataset skips it).
    """

    def __init__(self, data: str | Path, split: str = "train") -> None:
        self.files = export_files(data, split)
        self.bases = _image_bases(self.files, data)
        self._file_of = array("H")
        self._offset_of = array("q")
        for index, file in enumerate(self.files):
            with file.open("rb") as handle:
                offset = 0
                for line in handle:
                    if line.strip():
                        self._file_of.append(index)
                        self._offset_of.append(offset)
                    offset += len(line)

    def __len__(self) -> int:
        return len(self._offset_of)

    def location(self, index: int) -> str:
        return f"{self.files[self._file_of[index]]}@{self._offset_of[index]}"

    def __getitem__(self, index: int) -> TrainRow:
        file = self.files[self._file_of[index]]
        with file.open("rb") as handle:
            handle.seek(self._offset_of[index])
            line = handle.readline()
        location = self.location(index)
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as error:
            raise RecordError("bad_json", f"not JSON ({error})", location=location) from None
        if not isinstance(raw, dict):
            raise RecordError("bad_json", "a row must be a JSON object", location=location)
        return parse_row(raw, bases=self.bases, location=location)


# --------------------------------------------------------------------------------------------------
# Encoding


def _tokenizer_of(processor: Any) -> Any:
    return getattr(processor, "tokenizer", processor)


def _is_multimodal(processor: Any) -> bool:
    return getattr(processor, "image_processor", None) is not None


def conversation_of(row: TrainRow, *, multimodal: bool) -> list[dict[str, Any]]:
    """The chat-template conversation of a row; ``<image>`` becomes an image part for VLM processors."""
    conversation: list[dict[str, Any]] = []
    for role, content, _ in row.messages:
        if not multimodal:
            conversation.append({"role": role, "content": content})
            continue
        parts: list[dict[str, Any]] = []
        for index, piece in enumerate(content.split(IMAGE_PLACEHOLDER)):
            if index:
                parts.append({"type": "image"})
            if piece:
                parts.append({"type": "text", "text": piece})
        conversation.append({"role": role, "content": parts})
    return conversation


@dataclass
class EncodedRow:
    """Model inputs of one row (batch dimension 1 where the processor gives one) and its labels."""

    inputs: dict[str, torch.Tensor]
    trained_tokens: int


class ConversationEncoder:
    """Turns a :class:`TrainRow` into model inputs with labels only on assistant tokens.

    Args:
        processor: a transformers processor (VLMs) or tokenizer (text models) with a chat template.
        max_length: longest sequence kept; longer rows are cut at the end (never inside images).

    Example:
        >>> encoder = ConversationEncoder(AutoProcessor.from_pretrained(path), max_length=16384)
        >>> encoded = encoder.encode(row)  # doctest: +SKIP
    """

    def __init__(self, processor: Any, *, max_length: int = 16384) -> None:
        self.processor = processor
        self.tokenizer = _tokenizer_of(processor)
        self.multimodal = _is_multimodal(processor)
        self.max_length = max_length
        if (
            getattr(processor, "chat_template", None) is None
            and getattr(self.tokenizer, "chat_template", None) is None
        ):
            raise ChatTemplateError(
                f"{type(processor).__name__} has no chat template, so assistant turns cannot be found. "
                "Fix: use an instruct/chat checkpoint or set processor.chat_template before training"
            )
        self.image_token_ids = self._image_token_ids()

    def _image_token_ids(self) -> set[int]:
        ids: set[int] = set()
        for owner in (self.processor, self.tokenizer):
            value = getattr(owner, "image_token_id", None)
            if isinstance(value, int):
                ids.add(value)
            token = getattr(owner, "image_token", None)
            if isinstance(token, str):
                converted = self.tokenizer.convert_tokens_to_ids(token)
                if isinstance(converted, int) and converted != getattr(self.tokenizer, "unk_token_id", None):
                    ids.add(converted)
        return ids

    def render(self, conversation: list[dict[str, Any]], *, generation_prompt: bool = False) -> str:
        text = self.processor.apply_chat_template(
            conversation, tokenize=False, add_generation_prompt=generation_prompt
        )
        if not isinstance(text, str):
            raise ChatTemplateError(f"apply_chat_template returned {type(text).__name__}, expected a string")
        return text

    def assistant_spans(
        self, row: TrainRow, conversation: list[dict[str, Any]]
    ) -> tuple[str, list[tuple[int, int, int]]]:
        """The full rendered text and ``(start, end, message index)`` character spans of trained turns."""
        full = self.render(conversation)
        spans: list[tuple[int, int, int]] = []
        for index, (role, _, trained) in enumerate(row.messages):
            if role != "assistant" or not trained:
                continue
            before = self.render(conversation[:index], generation_prompt=True)
            through = self.render(conversation[: index + 1])
            if not through.startswith(before) or not full.startswith(through):
                raise ChatTemplateError(
                    f"the chat template of {type(self.processor).__name__} is not prefix-stable (rendering the "
                    f"first {index} messages is not a prefix of rendering {index + 1}), so assistant turns cannot "
                    "be located. Fix: use a template without history rewriting (e.g. no reasoning-trace stripping)"
                )
            end = len(through.rstrip())
            spans.append((len(before), end, index))
        return full, spans

    def encode(self, row: TrainRow) -> EncodedRow:
        """Tokenise ``row``; labels are the input ids on assistant tokens and ``-100`` elsewhere.

        Raises:
            RecordError: the row is longer than ``max_length`` inside its images, or nothing is left
                to train on after truncation.
        """
        conversation = conversation_of(row, multimodal=self.multimodal)
        full, spans = self.assistant_spans(row, conversation)
        images = [self._load_image(path) for path in row.images]
        if self.multimodal:
            batch = self.processor(
                text=[full], images=images or None, return_tensors="pt", add_special_tokens=False
            )
        else:
            batch = self.tokenizer([full], return_tensors="pt", add_special_tokens=False)
        inputs: dict[str, torch.Tensor] = {k: v for k, v in batch.items() if isinstance(v, torch.Tensor)}
        ids = inputs["input_ids"][0]
        labels = torch.full_like(ids, IGNORE_INDEX)
        for start, end in self._token_spans(full, spans, row, ids):
            labels[start:end] = ids[start:end]
        if ids.shape[0] > self.max_length:
            cut = ids[self.max_length :]
            if any(int(token) in self.image_token_ids for token in cut.unique()):
                raise RecordError(
                    "too_long",
                    f"row is {ids.shape[0]} tokens and its images reach past max_length={self.max_length}; "
                    "raise --max-length or lower the image resolution",
                    record_id=row.row_id,
                )
            for key, value in list(inputs.items()):
                if value.dim() >= 2 and value.shape[0] == 1 and value.shape[1] == ids.shape[0]:
                    inputs[key] = value[:, : self.max_length]
            labels = labels[: self.max_length]
        trained = int((labels != IGNORE_INDEX).sum())
        if trained == 0:
            raise RecordError(
                "no_target",
                f"no assistant token left within max_length={self.max_length}; raise --max-length",
                record_id=row.row_id,
            )
        inputs["labels"] = labels.unsqueeze(0)
        return EncodedRow(inputs, trained)

    def _load_image(self, path: Path) -> Any:
        from PIL import Image

        with Image.open(path) as image:
            return image.convert("RGB")

    def _token_spans(
        self, full: str, spans: list[tuple[int, int, int]], row: TrainRow, ids: torch.Tensor
    ) -> list[tuple[int, int]]:
        """Map character spans of ``full`` onto positions in the processor's (image-expanded) ids."""
        plain = self.tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
        plain_ids: list[int] = list(plain["input_ids"])
        offsets: list[tuple[int, int]] = [tuple(o) for o in plain["offset_mapping"]]
        expanded = ids.tolist()
        shift = len(expanded) - len(plain_ids)
        # Length of the common suffix: the text after the last image is tokenised identically.
        common = 0
        while common < min(len(plain_ids), len(expanded)) and plain_ids[-1 - common] == expanded[-1 - common]:
            common += 1
        first_aligned = len(plain_ids) - common
        starts = [start for start, _ in offsets]  # non-decreasing along the text
        result: list[tuple[int, int]] = []
        for start_char, end_char, index in spans:
            first, last = bisect_left(starts, start_char), bisect_left(starts, end_char)
            if first >= last:
                continue
            if first >= first_aligned:
                result.append((first + shift, last + shift))
            else:
                result.append(self._prefix_positions(full, start_char, end_char, row, index))
        return result

    def _prefix_positions(
        self, full: str, start_char: int, end_char: int, row: TrainRow, index: int
    ) -> tuple[int, int]:
        """Token positions of a span that precedes an image: tokenise the prefixes with their images."""
        count = sum(content.count(IMAGE_PLACEHOLDER) for _, content, _ in row.messages[:index])
        images = [self._load_image(path) for path in row.images[:count]]

        def length(prefix: str) -> int:
            if self.multimodal and images:
                out = self.processor(text=[prefix], images=images, add_special_tokens=False)
            else:
                out = self.tokenizer([prefix], add_special_tokens=False)
            return len(out["input_ids"][0])

        return length(full[:start_char]), length(full[:end_char])
