"""The records that flow through mmat.

A Foundation :class:`Sample` enters the engine; the same sample leaves it enriched with an RR
:class:`Trajectory`, an :class:`OrrSample` and a :class:`Quality` score, or as a :class:`Reject`.
Records hold images by reference (:class:`ImageRef`), never bytes. Every model forbids unknown keys so
a typo in a hand-written record fails loudly.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

SCHEMA_VERSION = "1"


class Record(BaseModel):
    """Base of every mmat record: unknown keys are an error."""

    model_config = ConfigDict(extra="forbid")


# --------------------------------------------------------------------------------------------------
# Foundation


class ImageRef(Record):
    """One image by reference.

    ``path`` is a URL, an absolute path, or a path relative to ``root``. ``sha256`` is filled when the
    bytes are first read (or by loaders that already know it) and is what caches key on.
    """

    path: str
    root: str | None = None
    sha256: str | None = None
    width: int | None = None
    height: int | None = None

    @field_validator("path")
    @classmethod
    def _non_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("image path is empty; give a file path relative to the source root or a URL")
        return value

    @property
    def is_url(self) -> bool:
        return self.path.startswith(("http://", "https://", "s3://", "gs://"))


class AnswerType(StrEnum):
    """How a gold answer is phrased; chooses the question's style suffix and the answer check."""

    SHORT_PHRASE = "short_phrase"
    SINGLE_WORD = "single_word"
    NUMBER = "number"
    OPTION_LETTER = "option_letter"
    YES_NO = "yes_no"
    FREE_FORM = "free_form"


class NumericRange(Record):
    """An inclusive numeric interval accepted as correct (InfoSeek ``{"range": [lo, hi]}``)."""

    lo: float
    hi: float

    @model_validator(mode="after")
    def _ordered(self) -> NumericRange:
        if self.lo > self.hi:
            raise ValueError(f"range low {self.lo} is above high {self.hi}; write [low, high]")
        return self


class QA(Record):
    """One original question-answer pair of a dialogue.

    ``question`` is the raw question; ``templated_question`` is what the teacher and the tuned model
    see (options rendered, style suffix appended). The gold ``answer`` is never changed.
    """

    qa_id: str
    question: str
    templated_question: str
    style_suffix: str = ""
    answer: str
    aliases: list[str] = Field(default_factory=list)
    answer_ranges: list[NumericRange] = Field(default_factory=list)
    choices: list[str] = Field(default_factory=list)
    answer_type: AnswerType = AnswerType.FREE_FORM
    unit: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class Sample(Record):
    """One dialogue: 1..n images with 1..n QA pairs, and what the stages add to it."""

    schema_version: str = SCHEMA_VERSION
    id: str
    source: str
    subset: str | None = None
    split: str | None = None
    license: str
    non_commercial: bool = False
    images: list[ImageRef] = Field(min_length=1)
    qas: list[QA] = Field(min_length=1)
    metadata: dict[str, Any] = Field(default_factory=dict)
    trajectory: Trajectory | None = None
    orr: OrrSample | None = None
    quality: Quality | None = None

    @field_validator("id")
    @classmethod
    def _id_shape(cls, value: str) -> str:
        if not value or any(ch in value for ch in "\n\r\t"):
            raise ValueError("sample id must be a non-empty single line like 'source/subset/original_id'")
        return value


# --------------------------------------------------------------------------------------------------
# Operators


class ToolCall(Record):
    """A request for one operator on a sample's images."""

    tool: str
    args: dict[str, Any] = Field(default_factory=dict)
    image_sha256: list[str] = Field(default_factory=list)


class ToolResult(Record):
    """What an operator returned.

    ``payload`` is structured (boxes, lines, hits); ``text`` is rendered exactly as the MMAT data shows
    it and is what goes into the observation turn. ``error`` is set instead of raising when the tool
    could not run; ``text`` then holds the message written for the model.
    """

    tool: str
    version: str = ""
    payload: Any = None
    text: str = ""
    error: str | None = None
    cache_key: str | None = None
    cached: bool = False
    elapsed_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None


# --------------------------------------------------------------------------------------------------
# RR trajectory


class Signal(StrEnum):
    CONTINUE = "continue"
    REFLECTION = "reflection"
    END = "end"


class StepFormat(Record):
    """How a parsed step was spelled, so that rendering it gives back the same bytes.

    ``leading`` is whitespace before ``<THOUGHT>``; ``gaps`` the whitespace after each closing tag
    except the last; ``order`` the order of the
    optional blocks; ``operator_spellings``/``operator_separators`` the raw operator list.
    """

    leading: str = ""
    gaps: list[str] = Field(default_factory=list)
    order: list[Literal["operator", "rag"]] = Field(default_factory=list)
    operator_spellings: list[str] = Field(default_factory=list)
    operator_separators: list[str] = Field(default_factory=list)
    operator_padding: tuple[str, str] = ("", "")
    trailing: str = ""


class Step(Record):
    """One RR assistant step: ``<THOUGHT>..</THOUGHT>[<OPERATOR>..</OPERATOR>][<RAG>..</RAG>]<SIGNAL>..</SIGNAL>``.

    ``operators`` holds canonical names (``face detection`` becomes ``face_detection``).
    """

    thought: str
    operators: list[str] = Field(default_factory=list)
    rag_query: str | None = None
    signal: Signal = Signal.CONTINUE
    format: StepFormat | None = None


class TurnKind(StrEnum):
    SYSTEM = "system"
    QUESTION = "question"
    STEP = "step"
    OBSERVATION = "observation"
    NO_TOOL = "no_tool"
    REFLECTION_PROMPT = "reflection_prompt"
    SUMMARIZE = "summarize"
    ANSWER = "answer"


class Turn(Record):
    """One message of a trajectory. ``content`` is the exact wire text; the rest is parsed from it."""

    role: Literal["system", "user", "assistant"]
    kind: TurnKind
    content: str
    step: Step | None = None
    results: list[ToolResult] = Field(default_factory=list)


class ReflectionKind(StrEnum):
    GENERAL = "general"
    MATH = "math"
    GATE = "gate"


class Reflection(Record):
    """Why a segment was repaired and where the reflection turns start."""

    kind: ReflectionKind
    reason: str
    trigger_turn: int | None = None


class Segment(Record):
    """The RR block of one QA: question turn, steps and observations, summarise turn, final answer."""

    qa_id: str
    turns: list[Turn]
    reflections: list[Reflection] = Field(default_factory=list)
    verified: bool | None = None


class Provenance(Record):
    """How a record was made: teacher, prompt hashes, tool versions, mmat version."""

    mmat_version: str = ""
    teacher: str | None = None
    teacher_model: str | None = None
    teacher_grade: str | None = None
    prompt_hashes: dict[str, str] = Field(default_factory=dict)
    tool_versions: dict[str, str] = Field(default_factory=dict)
    config_hash: str | None = None


class Trajectory(Record):
    """The multi-turn Rationale-and-Reflection conversation of one dialogue."""

    system: str
    segments: list[Segment]
    provenance: Provenance = Field(default_factory=Provenance)


# --------------------------------------------------------------------------------------------------
# ORR, quality, rejects


class ApiBlock(Record):
    """One ``<|begin_api_invoke|>name<|end_api_invoke|><|begin_result_of_api|>text<|end_result_of_api|>``."""

    tool: str
    text: str


class OrrSegment(Record):
    """One one-turn sample: a user turn with the api blocks and the merged-thought answer."""

    qa_id: str
    user: str
    assistant: str
    api_blocks: list[ApiBlock] = Field(default_factory=list)
    thought: str = ""
    answer: str = ""


class OrrSample(Record):
    """The Integration stage's one-turn (ORR) form of a dialogue."""

    system: str
    segments: list[OrrSegment]


class Quality(Record):
    """The judge's score of a sample (SPEC §1 quality check)."""

    score: float = Field(ge=0.0, le=1.0)
    reason: str = ""
    criteria: dict[str, float] = Field(default_factory=dict)
    passed: bool | None = None


class Reject(Record):
    """A record that did not make it, and why. Written to ``rejects.jsonl``; never silently dropped."""

    schema_version: str = SCHEMA_VERSION
    id: str | None = None
    source: str | None = None
    stage: str
    reason: str
    detail: str = ""
    location: str | None = None
    qa_id: str | None = None
    raw: str | None = None


Sample.model_rebuild()
