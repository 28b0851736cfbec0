"""LLaMA-Factory's ShareGPT format (``conversations`` + ``system`` + ``images``) and its dataset_info.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

from mmat.errors import RecordError
from mmat.export.conversation import ConversationExporter, Message, relative_posix
from mmat.schema import Sample

DATASET_INFO = "dataset_info.json"
ROLE_TAGS = {"user": "human", "assistant": "gpt"}


def dataset_info_entry(file_name: str) -> dict[str, Any]:
    """The ``dataset_info.json`` entry that tells LLaMA-Factory how to read the exported rows."""
    return {
        "file_name": file_name,
        "formatting": "sharegpt",
        "columns": {"messages": "conversations", "system": "system", "images": "images"},
        "tags": {
            "role_tag": "from",
            "content_tag": "value",
            "user_tag": "human",
            "assistant_tag": "gpt",
            "system_tag": "system",
        },
    }


class LlamaFactoryExporter(ConversationExporter):
    """Writes LLaMA-Factory's ShareGPT format plus the ``dataset_info.json`` that registers it.

    Each row is ``{"conversations": [{"from": "human"|"gpt", "value"}...], "system": ..., "images": [...]}``;
    the system prompt is its own column as LLaMA-Factory expects, and human/gpt turns alternate
    (operator observations are human turns). ``dataset_info.json`` gets one entry per split,
    ``mmat_rr_train`` for instance, whose ``file_name`` is the folder of shards.

    Train with ``llamafactory-cli train ... dataset_dir=EXPORT dataset=mmat_rr_train``.

    Example:
        >>> LlamaFactoryExporter(kind="orr").export(samples, Path("out/llamafactory"))
    """

    name: ClassVar[str] = "llamafactory"
    description: ClassVar[str] = (
        "LLaMA-Factory ShareGPT (conversations + system + images) + dataset_info.json"
    )

    def data_dir(self, out_dir: Path, split: str) -> Path:
        return out_dir / f"mmat_{self.kind}_{split}"

    def row(self, sample: Sample, messages: list[Message], images: list[str]) -> dict[str, Any]:
        has_system = bool(messages) and messages[0][0] == "system"
        system = messages[0][1] if has_system else ""
        body = messages[1:] if has_system else messages
        conversations = []
        for index, (role, content) in enumerate(body):
            expected = "user" if index % 2 == 0 else "assistant"
            if role != expected:
                raise RecordError(
                    "bad_turn_order",
                    f"turn {index} is {role!r} where ShareGPT needs {expected!r}: user and assistant turns must "
                    "alternate, starting with the user. Fix the trajectory (merge consecutive turns)",
                    record_id=sample.id,
                )
            conversations.append({"from": ROLE_TAGS[role], "value": content})
        if len(conversations) % 2:
            raise RecordError(
                "bad_turn_order",
                "the conversation ends with a user turn; ShareGPT rows end with an assistant (gpt) turn",
                record_id=sample.id,
            )
        return {
            "id": sample.id,
            "conversations": conversations,
            "system": system,
            "images": images,
            "source": sample.source,
            "license": sample.license,
            "non_commercial": sample.non_commercial,
        }

    def finish(self, out_dir: Path, shards: dict[str, list[Path]]) -> list[Path]:
        path = out_dir / DATASET_INFO
        info: dict[str, Any] = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
        for split, paths in sorted(shards.items()):
            if paths:
                info[f"mmat_{self.kind}_{split}"] = dataset_info_entry(
                    relative_posix(paths[0].parent, out_dir)
                )
        path.write_text(json.dumps(info, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        return [path]
