"""The Foundation source interface: stream :class:`~mmat.schema.Sample` records or rejects.

A source iterates lazily over its files and yields either a ``Sample`` or a ``Reject`` (bad JSON
line, missing field, missing image...), so one bad record never stops the run and is never dropped.

:class:`FileSource` is the shared base of the built-in loaders: it validates the source options when
the loader is constructed, finds the files, templates questions, builds image references that cannot
leave their root, and turns :class:`~mmat.errors.RecordError` into ``Reject(stage="foundation")``.
"""

from __future__ import annotations

import json
import os
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mmat.config import SourceConfig
from mmat.errors import ConfigError, ImageError, RecordError
from mmat.schema import QA, AnswerType, ImageRef, NumericRange, Reject, Sample
from mmat.sources.sharding import make_sample_id
from mmat.sources.templates import QuestionTemplates, infer_answer_type

STAGE = "foundation"
RAW_MAX_CHARS = 2000


class Source(ABC):
    """One dataset loader. ``name`` is its registry name; ``license`` the default record licence."""

    name: ClassVar[str]
    description: ClassVar[str] = ""
    license: ClassVar[str] = "unknown"
    non_commercial: ClassVar[bool] = False

    def __init__(self, config: SourceConfig) -> None:
        self.config = config

    @abstractmethod
    def iter_records(self) -> Iterator[Sample | Reject]:
        """Yield samples and rejects in a deterministic order."""


class SourceOptions(BaseModel):
    """Options every file source accepts (``SourceConfig.options``).

    Attributes:
        image_root: where image paths are resolved (relative to ``root``; default ``root``).
        templates: a YAML file overriding ``templates.yaml`` (same shape).
        styles: style key -> suffix overrides, e.g. ``{"short_phrase": "Give a short answer."}``.
        answer_type: force one answer type for every QA instead of inferring it.
        license: the licence written on every record (default: the dataset's).
        non_commercial: flag every record as non-commercial (default: the dataset's).
        check_images: ``exists`` rejects a record whose image file is missing while loading;
            ``none`` defers every image check to :func:`mmat.sources.check_images`.
    """

    model_config = ConfigDict(extra="forbid")

    image_root: str | None = None
    templates: str | None = None
    styles: dict[str, str] = Field(default_factory=dict)
    answer_type: AnswerType | None = None
    license: str | None = None
    non_commercial: bool | None = None
    check_images: Literal["exists", "none"] = "exists"


def require(record: Any, key: str, kind: type | tuple[type, ...], *, location: str | None = None) -> Any:
    """``record[key]`` when present and of type ``kind``; else a ``missing_field``/``bad_field`` error."""
    # Fast path first: this runs several times per record on million-record files.
    if type(record) is dict:
        value = record.get(key)
        kinds = _as_tuple(kind)
        if type(value) is str:
            if str in kinds and value.strip():
                return value
        elif value is not None and type(value) is not bool and isinstance(value, kinds):
            return value
    if not isinstance(record, dict):
        raise RecordError(
            "bad_record", f"expected a JSON object, got {type(record).__name__}", location=location
        )
    value = record.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        raise RecordError(
            "missing_field",
            f"field {key!r} is missing or empty (fields present: {sorted(record)})",
            location=location,
        )
    if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _as_tuple(kind)):
        names = "/".join(t.__name__ for t in _as_tuple(kind))
        raise RecordError(
            "bad_field", f"field {key!r} should be {names}, got {type(value).__name__}", location=location
        )
    return value


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def strip_image_tokens(text: str) -> str:
    """Drop LLaVA ``<image>`` placeholders (mmat's wire format adds its own)."""
    if "<image>" not in text:
        return text.strip()
    return "\n".join(line for line in text.replace("<image>", "").splitlines() if line.strip()).strip()


class FileSource(Source):
    """Base of the file-based loaders; subclasses implement :meth:`iter_file`.

    Subclasses set ``Options`` (a :class:`SourceOptions` subclass) and ``default_files`` (globs under
    the root used when ``SourceConfig.files`` is empty).
    """

    Options: ClassVar[type[SourceOptions]] = SourceOptions
    default_files: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: SourceConfig) -> None:
        super().__init__(config)
        try:
            self.options = self.Options.model_validate(config.options)
        except ValidationError as error:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors(include_url=False)
            )
            valid = ", ".join(sorted(self.Options.model_fields))
            raise ConfigError(
                f"source {self.name!r}: bad options ({problems}); valid options: {valid}"
            ) from None
        self.root = Path(config.root)
        if not self.root.is_dir():
            raise ConfigError(
                f"source {self.name!r}: root {config.root} is not a directory; pass the dataset folder"
            )
        image_root = self.root / self.options.image_root if self.options.image_root else self.root
        self.image_root = os.path.abspath(image_root)
        self.templates = QuestionTemplates.load(
            self.name, file=self.options.templates, styles=self.options.styles
        )
        self.record_license = self.options.license or self.license
        self.record_non_commercial = (
            self.non_commercial if self.options.non_commercial is None else self.options.non_commercial
        )

    # ---------------------------------------------------------------------------------------------
    # files

    def files(self) -> list[Path]:
        """The input files: ``SourceConfig.files`` (globs under root) or the source's defaults, sorted."""
        patterns = self.config.files or list(self.default_files)
        found: dict[Path, None] = {}
        for pattern in patterns:
            if Path(pattern).is_absolute():
                matches = [Path(pattern)] if Path(pattern).exists() else []
            else:
                matches = sorted(p for p in self.root.glob(pattern) if p.is_file())
            for match in matches:
                found.setdefault(match, None)
        if not found:
            raise ConfigError(
                f"source {self.name!r}: no files match {patterns} under {self.root}; "
                "check --root or list the files in SourceConfig.files"
            )
        return list(found)

    def iter_records(self) -> Iterator[Sample | Reject]:
        for path in self.files():
            yield from self.iter_file(path)

    @abstractmethod
    def iter_file(self, path: Path) -> Iterator[Sample | Reject]:
        """Yield the samples and rejects of one input file."""

    # ---------------------------------------------------------------------------------------------
    # building records

    def reject(self, error: RecordError, *, raw: Any = None, sample_id: str | None = None) -> Reject:
        """A foundation ``Reject`` from a record error; ``raw`` is kept shortened for inspection."""
        raw_text = None
        if raw is not None:
            raw_text = raw if isinstance(raw, str) else json.dumps(raw, ensure_ascii=False, default=repr)
            raw_text = raw_text[:RAW_MAX_CHARS]
        return Reject(
            id=sample_id or error.record_id,
            source=self.name,
            stage=STAGE,
            reason=error.reason,
            detail=error.detail,
            location=error.location,
            raw=raw_text,
        )

    def sample_id(self, subset: str | None, original_id: object) -> str:
        return make_sample_id(self.name, subset, original_id)

    def image_ref(
        self,
        path: str,
        *,
        location: str | None = None,
        width: int | None = None,
        height: int | None = None,
        sha256: str | None = None,
        root: str | None = None,
    ) -> ImageRef:
        """An image reference under the image root; refuses paths that leave it.

        Raises:
            ImageError: ``image_outside_root`` (absolute or ``..``) or, with ``check_images: exists``,
                ``image_missing``. Symlinks that point out are refused by the lazy check.
        """
        root = root or self.image_root
        normal = path.replace("\\", "/")
        drive = normal[1:3] == ":/" and normal[0].isalpha()  # C:/... written on Windows
        if normal.startswith("/") or drive or ".." in normal.split("/"):
            raise ImageError(
                "image_outside_root",
                f"image path {path!r} must be relative to {root} and must not contain '..'; fix the record "
                "or set the image_root option",
                location=location,
            )
        if self.options.check_images == "exists" and not os.path.isfile(os.path.join(root, path)):
            raise ImageError(
                "image_missing",
                f"image {path!r} is not under {root}; check --root / the image_root option, or set "
                "check_images: none to defer the check",
                location=location,
            )
        return ImageRef(path=path, root=root, width=width, height=height, sha256=sha256)

    def make_qa(
        self,
        index: int,
        question: str,
        answer: str,
        *,
        choices: list[str] | None = None,
        unit: str | None = None,
        answer_type: AnswerType | None = None,
        aliases: list[str] | None = None,
        answer_ranges: list[NumericRange] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> QA:
        """One QA with its templated question; the answer is stored exactly as given."""
        question = strip_image_tokens(question)
        choices = choices or []
        kind = (
            self.options.answer_type
            or answer_type
            or infer_answer_type(answer, choices, short_max_words=self.templates.short_answer_max_words)
        )
        templated = self.templates.render(question, kind, choices=choices, answer=answer, unit=unit)
        meta = dict(metadata or {})
        if choices:
            letter = self.templates.option_letter(answer, choices)
            if letter:
                meta["answer_option_letter"] = letter
        return QA(
            qa_id=str(index),
            question=question,
            templated_question=templated.text,
            style_suffix=templated.suffix,
            answer=answer,
            aliases=aliases or [],
            answer_ranges=answer_ranges or [],
            choices=choices,
            answer_type=kind,
            unit=unit,
            metadata=meta,
        )

    def make_sample(
        self,
        sample_id: str,
        *,
        subset: str | None,
        split: str | None,
        images: list[ImageRef],
        qas: list[QA],
        metadata: dict[str, Any] | None = None,
        license: str | None = None,
        non_commercial: bool | None = None,
    ) -> Sample:
        return Sample(
            id=sample_id,
            source=self.name,
            subset=subset,
            split=split,
            license=license or self.record_license,
            non_commercial=self.record_non_commercial if non_commercial is None else non_commercial,
            images=images,
            qas=qas,
            metadata=metadata or {},
        )
