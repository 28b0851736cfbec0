"""Your own image-QA data: JSON Lines, JSON, Parquet or a local Hugging Face ``datasets`` folder."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mmat.errors import ConfigError, MissingDependencyError, RecordError
from mmat.schema import AnswerType, ImageRef, Reject, Sample
from mmat.sources.base import FileSource, SourceOptions
from mmat.sources.cauldron import image_bytes
from mmat.sources.image_store import ImageStore
from mmat.sources.streaming import iter_json_items, iter_jsonl

_MISSING = object()


class FieldMap(BaseModel):
    """Where each value lives in a row; dotted paths reach into nested objects (``meta.qid``).

    ``question`` and ``answer`` are required in every row; ``image`` too (a path relative to the
    image root, a list of paths, or image bytes / an HF ``Image`` struct, which go to the image store).
    An ``answer`` that is a list gives the gold answer first and aliases after.
    """

    model_config = ConfigDict(extra="forbid")

    id: str | None = "id"
    question: str = "question"
    answer: str = "answer"
    image: str = "image"
    choices: str | None = "choices"
    answer_type: str | None = "answer_type"
    unit: str | None = "unit"
    aliases: str | None = "aliases"
    subset: str | None = "subset"
    split: str | None = "split"


class GenericOptions(SourceOptions):
    """Generic source options.

    Attributes:
        format: ``jsonl``, ``json`` (one array, or an object keyed by id), ``parquet``, ``hf`` (a folder
            written by ``datasets.save_to_disk``), or ``auto`` (by file name / folder content).
        fields: the field mapping (:class:`FieldMap`).
        answer_types: source value -> answer type, for datasets with their own type names.
        subset: the subset written into ids when rows carry none (default: the file's stem).
        image_store: folder for images that arrive as bytes (relative to root, or absolute).
        metadata_fields: extra row fields copied into the QA metadata.
    """

    format: Literal["auto", "jsonl", "json", "parquet", "hf"] = "auto"
    fields: FieldMap = Field(default_factory=FieldMap)
    answer_types: dict[str, AnswerType] = Field(default_factory=dict)
    subset: str | None = None
    image_store: str = "mmat_images"
    metadata_fields: list[str] = Field(default_factory=list)


def get_path(row: Any, dotted: str) -> Any:
    """``row["a"]["b"]`` for ``"a.b"``; ``_MISSING`` when any step is absent."""
    value = row
    for part in dotted.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        else:
            return _MISSING
    return value


class GenericSource(FileSource):
    """Any image-QA dataset on disk, one row = one sample with one QA, mapped by ``fields``.

    Example (a run config)::

        sources:
          - name: generic
            root: data/my_vqa
            files: ["train.parquet"]
            options:
              fields: {id: qid, question: prompt, answer: label, image: img}
              license: CC-BY-4.0
    """

    name = "generic"
    description = "your JSONL / JSON / Parquet / HF datasets folder with a field mapping (options.fields)"
    Options = GenericOptions
    default_files = ("**/*.jsonl", "**/*.parquet")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._store: ImageStore | None = None
        if self.record_license == "unknown" and self.options.license is None:
            self.record_license = "unknown (set the generic source's license option)"

    @property
    def store(self) -> ImageStore:
        if self._store is None:
            folder = Path(self.options.image_store)  # type: ignore[attr-defined]
            self._store = ImageStore(folder if folder.is_absolute() else self.root / folder)
        return self._store

    # ---------------------------------------------------------------------------------------------
    # files and rows

    def _is_hf_folder(self, folder: Path) -> bool:
        return (folder / "state.json").is_file() or (folder / "dataset_dict.json").is_file()

    def files(self) -> list[Path]:
        options: GenericOptions = self.options  # type: ignore[assignment]
        if options.format == "hf" or (options.format == "auto" and self._is_hf_folder(self.root)):
            return self._hf_files(self.root)
        return super().files()

    def _hf_files(self, folder: Path) -> list[Path]:
        if (folder / "dataset_dict.json").is_file():
            splits = json.loads((folder / "dataset_dict.json").read_text(encoding="utf-8")).get("splits", [])
            return [f for split in splits for f in self._hf_files(folder / split)]
        state = folder / "state.json"
        if not state.is_file():
            raise ConfigError(
                f"{folder} is not a Hugging Face datasets folder (no state.json or dataset_dict.json); "
                "write it with Dataset.save_to_disk or pick another format"
            )
        names = [entry["filename"] for entry in json.loads(state.read_text(encoding="utf-8"))["_data_files"]]
        return [folder / name for name in names]

    def _rows(self, path: Path) -> Iterator[tuple[str, Any]]:
        options: GenericOptions = self.options  # type: ignore[assignment]
        kind: str = options.format
        if kind == "auto" or (kind == "hf" and path.suffix != ".arrow"):
            kind = {".jsonl": "jsonl", ".json": "json", ".parquet": "parquet", ".arrow": "hf"}.get(
                path.suffix, ""
            )
            if not kind:
                raise ConfigError(f"cannot tell the format of {path}; set the generic source's format option")
        if kind == "jsonl":
            yield from iter_jsonl(path)
        elif kind == "json":
            for location, item in iter_json_items(path):
                if isinstance(item, tuple):  # object keyed by id
                    key, value = item
                    if isinstance(value, dict) and options.fields.id and options.fields.id not in value:
                        value = {**value, options.fields.id: key}
                    item = value
                yield location, item
        else:
            try:
                import pyarrow as pa
                import pyarrow.parquet as pq
            except ImportError as error:
                raise MissingDependencyError("pyarrow (parquet/arrow reading)", "sources", error) from None
            if kind == "parquet":
                batches = pq.ParquetFile(path).iter_batches(batch_size=256)
            else:
                batches = iter(pa.ipc.open_stream(pa.memory_map(str(path))))
            row = 0
            for batch in batches:
                for record in batch.to_pylist():
                    yield f"{path}:row{row}", record
                    row += 1

    def iter_file(self, path: Path) -> Iterator[Sample | Reject]:
        split = (
            path.parent.name
            if self._is_hf_folder(path.parent) and (path.parent.parent / "dataset_dict.json").is_file()
            else None
        )
        for index, (location, row) in enumerate(self._rows(path)):
            if isinstance(row, RecordError):
                yield self.reject(row)
                continue
            try:
                yield self.convert(row, location, path, index, split)
            except RecordError as error:
                yield self.reject(error, raw=_short(row))
            except ValidationError as error:
                bad = RecordError("bad_field", f"row does not fit the schema: {error}", location=location)
                yield self.reject(bad, raw=_short(row))

    # ---------------------------------------------------------------------------------------------
    # one row

    def _images(self, value: Any, location: str) -> list[ImageRef]:
        cells = value if isinstance(value, list) else [value]
        refs = []
        for cell in cells:
            if isinstance(cell, str) and cell.startswith(("http://", "https://")):
                # kept as a URL: the lazy check asks for a local copy before a tool reads it
                refs.append(ImageRef(path=cell))
            elif isinstance(cell, str) and cell.strip():
                refs.append(self.image_ref(cell, location=location))
            elif (data := image_bytes(cell)) is not None:
                refs.append(self.store.put(data))
            elif isinstance(cell, dict) and isinstance(cell.get("path"), str) and cell["path"]:
                refs.append(self.image_ref(cell["path"], location=location))
            else:
                raise RecordError(
                    "image_missing", f"row has no usable image (got {_short(cell)})", location=location
                )
        if not refs:
            raise RecordError("image_missing", "row has an empty image list", location=location)
        return refs

    def convert(self, row: Any, location: str, path: Path, index: int, split: str | None) -> Sample:
        """One row as a sample (raises :class:`RecordError` when it is bad)."""
        options: GenericOptions = self.options  # type: ignore[assignment]
        fields = options.fields
        if not isinstance(row, dict):
            raise RecordError(
                "bad_record", f"expected an object per row, got {type(row).__name__}", location=location
            )

        def get(name: str | None) -> Any:
            if name is None:
                return None
            value = get_path(row, name)
            return None if value is _MISSING else value

        subset = get(fields.subset) or options.subset or path.stem
        original = get(fields.id)
        if original is None:
            original = f"{split}-{path.stem}-{index}" if split else f"{path.stem}-{index}"
        sample_id = self.sample_id(str(subset), original)
        try:
            question = get(fields.question)
            answer = get(fields.answer)
            for name, value in ((fields.question, question), (fields.answer, answer)):
                if value is None or (isinstance(value, str | list) and not value):
                    raise RecordError(
                        "missing_field",
                        f"field {name!r} is missing or empty (row keys: {sorted(row)}); map it with options.fields",
                        location=location,
                    )
            aliases = [str(a) for a in (get(fields.aliases) or [])]
            if isinstance(answer, list):
                answer, aliases = str(answer[0]), [str(a) for a in answer[1:]] + aliases
            answer = str(answer)
            kind_value = get(fields.answer_type)
            kind: AnswerType | None = None
            if kind_value is not None:
                kind = options.answer_types.get(str(kind_value))
                if kind is None:
                    try:
                        kind = AnswerType(str(kind_value))
                    except ValueError:
                        raise RecordError(
                            "unknown_answer_type",
                            f"answer type {kind_value!r} is not one of {[t.value for t in AnswerType]}; map it "
                            "with options.answer_types",
                            location=location,
                        ) from None
            choices = get(fields.choices) or []
            if not isinstance(choices, list):
                raise RecordError(
                    "bad_field", f"field {fields.choices!r} should be a list", location=location
                )
            image_value = get(fields.image)
            if image_value is None:
                raise RecordError(
                    "image_missing",
                    f"field {fields.image!r} is missing; map it with options.fields.image",
                    location=location,
                )
            metadata = {name: get(name) for name in options.metadata_fields}
            qa = self.make_qa(
                0,
                str(question),
                answer,
                choices=[str(c) for c in choices],
                unit=get(fields.unit) or None,
                answer_type=kind,
                aliases=aliases,
                metadata=metadata,
            )
            images = self._images(image_value, location)
        except RecordError as error:
            error.record_id = sample_id
            raise
        return self.make_sample(
            sample_id,
            subset=str(subset),
            split=get(fields.split) or split,
            images=images,
            qas=[qa],
            metadata={"location": location},
        )


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 300 else text[:300] + "..."
