"""ms-swift's standard dataset format: ``messages`` + ``images``."""

from __future__ import annotations

from typing import Any, ClassVar

from mmat.export.conversation import DEFAULT_SHARD_SIZE, ConversationExporter, Kind, Message
from mmat.export.image_paths import ImageMode
from mmat.schema import Sample


class SwiftExporter(ConversationExporter):
    """Writes ms-swift's standard format, one JSON row per sample.

    Each row is ``{"messages": [{"role", "content"}...], "images": [...], ...}``: the system prompt is
    the first message, operator observations stay ``user`` turns, and each image has one ``<image>``
    placeholder in order. ``final_round_only`` marks every assistant message with ms-swift's per-message
    ``loss`` flag so that only the final answer is trained (``loss: false`` on the earlier rounds), the
    dataset-level equivalent of ``--loss_scale last_round``. Extra keys (``id``, ``source``,
    ``license``, ``non_commercial``) are ignored by ms-swift and keep every row's licence.

    Train with ``swift sft --dataset EXPORT/train``. ms-swift resolves relative image paths against the
    working directory, not the JSONL file (modelscope/ms-swift#7887): run it from the export directory,
    or export with ``image_paths="absolute"`` (``--images absolute``).

    Example:
        >>> SwiftExporter(image_paths="copy", final_round_only=True).export(samples, Path("out/swift"))
    """

    name: ClassVar[str] = "swift"
    description: ClassVar[str] = "ms-swift standard format (messages + images), sharded JSONL"

    def __init__(
        self,
        *,
        image_paths: ImageMode = "relative",
        kind: Kind = "rr",
        shard_size: int = DEFAULT_SHARD_SIZE,
        final_round_only: bool = False,
    ) -> None:
        super().__init__(image_paths=image_paths, kind=kind, shard_size=shard_size)
        self.final_round_only = final_round_only

    def row(self, sample: Sample, messages: list[Message], images: list[str]) -> dict[str, Any]:
        last_assistant = max((i for i, (role, _) in enumerate(messages) if role == "assistant"), default=-1)
        rendered: list[dict[str, Any]] = []
        for index, (role, content) in enumerate(messages):
            message: dict[str, Any] = {"role": role, "content": content}
            if self.final_round_only and role == "assistant":
                message["loss"] = index == last_assistant
            rendered.append(message)
        return {
            "id": sample.id,
            "messages": rendered,
            "images": images,
            "source": sample.source,
            "license": sample.license,
            "non_commercial": sample.non_commercial,
        }
