"""The Cauldron (HuggingFaceM4/the_cauldron): per-config parquet with image bytes and texts."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError

from mmat.errors import MissingDependencyError, RecordError
from mmat.schema import QA, ImageRef, Reject, Sample
from mmat.sources.base import FileSource, SourceOptions
from mmat.sources.image_store import ImageStore

CAULDRON_LICENSE = "CC-BY-4.0"
# Subsets whose original licence forbids commercial use (flagged on every record).
NON_COMMERCIAL_SUBSETS = ("hateful_memes", "iconqa")


class CauldronOptions(SourceOptions):
    """The Cauldron options.

    Attributes:
        image_store: folder of the content-addressed image store (relative to root, or absolute);
            ``mmat foundation`` puts it beside ``--out``.
        config: the subset name; default: the parquet file's parent folder (``<config>/*.parquet``).
        subset_licenses: subset -> licence of its original dataset, written beside CC-BY-4.0.
        non_commercial_subsets: subsets flagged ``non_commercial``.
        batch_rows: parquet rows read at a time (memory vs speed).
    """

    image_store: str = "mmat_images"
    config: str | None = None
    subset_licenses: dict[str, str] = Field(default_factory=dict)
    non_commercial_subsets: list[str] = Field(default_factory=lambda: list(NON_COMMERCIAL_SUBSETS))
    batch_rows: int = 64


def image_bytes(value: Any) -> bytes | None:
    """The bytes of one parquet image cell (``{"bytes": ..., "path": ...}`` struct or raw bytes)."""
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    if isinstance(value, dict) and isinstance(value.get("bytes"), bytes | bytearray):
        return bytes(value["bytes"])
    return None


class CauldronSource(FileSource):
    """The Cauldron: ``<config>/*.parquet`` with columns ``images`` (list of image structs with
    ``bytes``) and ``texts`` (list of ``{user, assistant, source}``).

    One row is one sample; each text is one QA (``user`` question, ``assistant`` gold answer). Image
    bytes go once into a content-addressed store (sha256 file names) and records reference them.
    Licence: CC-BY-4.0 plus the subset's own licence. Needs ``pip install 'mmat[sources]'``.

    Example:
        ``mmat foundation --source cauldron --root the_cauldron --out cauldron.jsonl``
    """

    name = "cauldron"
    description = (
        "The Cauldron parquet (images as bytes + texts); images to a sha256 store (CC-BY-4.0 + subset)"
    )
    license = CAULDRON_LICENSE
    Options = CauldronOptions
    default_files = ("**/*.parquet",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        options: CauldronOptions = self.options  # type: ignore[assignment]
        store = Path(options.image_store)
        self.store = ImageStore(store if store.is_absolute() else self.root / store)

    def iter_file(self, path: Path) -> Iterator[Sample | Reject]:
        try:
            import pyarrow.parquet as pq
        except ImportError as error:
            raise MissingDependencyError("pyarrow (parquet reading)", "sources", error) from None
        options: CauldronOptions = self.options  # type: ignore[assignment]
        config = options.config or path.parent.name
        try:
            parquet = pq.ParquetFile(path)
        except Exception as error:  # pyarrow raises several unrelated types for a bad file
            yield self.reject(
                RecordError(
                    "bad_parquet", f"cannot open parquet file ({error}); re-download it", location=str(path)
                )
            )
            return
        missing = {"images", "texts"} - set(parquet.schema_arrow.names)
        if missing:
            yield self.reject(
                RecordError(
                    "missing_field",
                    f"parquet file lacks columns {sorted(missing)} (has {parquet.schema_arrow.names}); is this "
                    "a Cauldron config? Use the generic source for other parquet layouts",
                    location=str(path),
                )
            )
            return
        row = 0
        for batch in parquet.iter_batches(batch_size=options.batch_rows, columns=["images", "texts"]):
            images_column = batch.column("images").to_pylist()
            texts_column = batch.column("texts").to_pylist()
            for images, texts in zip(images_column, texts_column, strict=True):
                location = f"{path}:row{row}"
                sample_id = self.sample_id(config, f"{path.stem}-{row}")
                row += 1
                try:
                    yield self.convert(sample_id, config, images, texts, location)
                except RecordError as error:
                    error.record_id = sample_id
                    yield self.reject(error, raw=repr(texts))
                except ValidationError as error:
                    bad = RecordError("bad_field", f"row does not fit the schema: {error}", location=location)
                    yield self.reject(bad, raw=repr(texts), sample_id=sample_id)

    def convert(self, sample_id: str, config: str, images: Any, texts: Any, location: str) -> Sample:
        """One Cauldron row (raises :class:`RecordError` when it is bad)."""
        options: CauldronOptions = self.options  # type: ignore[assignment]
        if not texts:
            raise RecordError("missing_field", "row has no texts", location=location)
        if not images:
            raise RecordError("image_missing", "row has no images", location=location)
        qas: list[QA] = []
        for number, text in enumerate(texts):
            if not isinstance(text, dict) or not text.get("user") or not text.get("assistant"):
                raise RecordError(
                    "missing_field",
                    f"text {number} needs non-empty 'user' and 'assistant'",
                    location=location,
                )
            qas.append(
                self.make_qa(
                    len(qas), text["user"], text["assistant"], metadata={"source": text.get("source")}
                )
            )
        refs: list[ImageRef] = []
        for number, cell in enumerate(images):
            data = image_bytes(cell)
            if not data:
                raise RecordError("image_missing", f"image {number} has no bytes", location=location)
            refs.append(self.store.put(data))
        licence = self.record_license
        if config in options.subset_licenses:
            licence = f"{licence} AND {options.subset_licenses[config]}"
        return self.make_sample(
            sample_id,
            subset=config,
            split="train",
            images=refs,
            qas=qas,
            metadata={"location": location},
            license=licence,
            non_commercial=self.record_non_commercial or config in options.non_commercial_subsets,
        )
