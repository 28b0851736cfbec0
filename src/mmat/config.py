"""The run configuration: one pydantic model, YAML is only its serialisation.

Secrets never live here: the teacher names the *environment variable* that holds its API key.
CLI flags override fields with dotted paths (``teacher.model=gpt-4o``).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mmat.errors import ConfigError


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SourceConfig(Section):
    """One input dataset: a registered source name and where its files are."""

    name: str
    root: str
    files: list[str] = Field(
        default_factory=list, description="files or globs under root; empty = the source's default"
    )
    options: dict[str, Any] = Field(default_factory=dict)
    limit: int | None = None
    sample: int | None = None
    seed: int = 0


class TeacherConfig(Section):
    """Which model writes the rationales. ``kind`` is a registered teacher name."""

    kind: str = "local"
    base_url: str | None = None
    model: str = "SmolLM2-135M-Instruct"
    api_key_env: str | None = "OPENAI_API_KEY"
    timeout_s: float = 120.0
    temperature: float = 0.0
    max_tokens: int = 1024
    image_detail: Literal["low", "high", "auto"] = "auto"
    image_max_side: int | None = None
    prices: dict[str, float] = Field(
        default_factory=dict, description="USD per 1M tokens: keys 'input', 'output' (and 'cached_input')"
    )


class EngineConfig(Section):
    """Time and failure: concurrency, rate limits, retries, caches, checkpoints."""

    max_samples_in_flight: int = 256
    max_concurrent_requests: int = 64
    rpm: int | None = None
    tpm: int | None = None
    adaptive: bool = True
    max_retries: dict[str, int] = Field(
        default_factory=lambda: {"rate_limit": 20, "server": 6, "timeout": 4, "malformed": 3, "client": 0}
    )
    backoff_base_s: float = 0.5
    backoff_max_s: float = 60.0
    cache_dir: str | None = None
    shards: int = 1
    batch: bool = False
    batch_poll_s: float = Field(default=30.0, description="seconds between Batch API status polls")
    batch_max_requests: int = Field(
        default=50_000, description="requests per submitted batch (OpenAI: 50,000)"
    )
    batch_resubmits: int = Field(
        default=3, description="times failed or expired batch requests are resubmitted"
    )


class ToolsConfig(Section):
    """Which operators run, with which backend and options."""

    enabled: list[str] = Field(
        default_factory=lambda: ["image_caption", "label_bbox", "ocr", "face_detection"]
    )
    backends: dict[str, str] = Field(default_factory=dict, description="operator -> registered tool name")
    options: dict[str, dict[str, Any]] = Field(default_factory=dict)
    workers: int = 2
    timeout_s: float = 120.0


class SearchConfig(Section):
    """RAG: the search backend and how many snippets come back (paper: top-k 3)."""

    backend: str = "bm25"
    index: str | None = Field(default=None, description="an index folder written by `mmat index build`")
    corpus: str | None = Field(
        default=None,
        description="corpus.jsonl to index in memory when no index is given; None = offline Wikipedia summaries",
    )
    top_k: int = 3
    max_chars: int = 1500
    options: dict[str, Any] = Field(
        default_factory=dict, description="backend options (web APIs: api_key_env, base_url, cx...)"
    )


class StagesConfig(Section):
    """Switches and limits of the four stages."""

    max_steps: int = 6
    answer_retries: int = 2
    json_retries: int = 2
    general_reflection: bool = True
    math_reflection: bool = True
    leak_gate: bool = True
    integration: bool = True
    quality: bool = True
    quality_threshold: float = 0.5


class OutputConfig(Section):
    dir: str = "out"
    exports: list[str] = Field(default_factory=lambda: ["mmat1m"])
    image_paths: Literal["relative", "absolute", "copy"] = "relative"


class RaySettings(Section):
    """The Ray executor (``executor: ray``): cluster address, parallelism, retries, tool actors."""

    address: str | None = Field(
        default=None, description="'auto' to join a running cluster, 'local' or None to start one"
    )
    num_cpus: int | None = Field(default=None, description="CPUs of a locally started Ray instance")
    workers: int | None = Field(
        default=None, description="for reports only; Ray schedules by cpus_per_worker"
    )
    cpus_per_worker: float = 1.0
    shard_retries: int = 3
    tool_actors: dict[str, dict[str, float]] = Field(
        default_factory=dict,
        description="operator -> Ray resources of the one actor that runs it for all workers, e.g. {ocr: {num_gpus: 1}}",
    )


class RunConfig(Section):
    """Everything one ``mmat build`` needs."""

    sources: list[SourceConfig] = Field(default_factory=list)
    teacher: TeacherConfig = Field(default_factory=TeacherConfig)
    engine: EngineConfig = Field(default_factory=EngineConfig)
    tools: ToolsConfig = Field(default_factory=ToolsConfig)
    search: SearchConfig = Field(default_factory=SearchConfig)
    stages: StagesConfig = Field(default_factory=StagesConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)
    ablation: Literal["full", "no_operators", "no_rag", "no_reflection", "orr_only"] = "full"
    executor: Literal["local", "ray"] = "local"
    ray_address: str | None = None
    ray: RaySettings = Field(default_factory=RaySettings)
    seed: int = 42

    @classmethod
    def from_yaml(cls, path: str | Path) -> RunConfig:
        """Load a YAML run config; errors name the file, the field and what was expected."""
        try:
            data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except FileNotFoundError:
            raise ConfigError(
                f"config file {path} does not exist; write one or start from configs/demo.yaml"
            ) from None
        except yaml.YAMLError as error:
            raise ConfigError(f"config file {path} is not valid YAML: {error}") from None
        return cls.from_dict(data, origin=str(path))

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, origin: str = "config") -> RunConfig:
        try:
            return cls.model_validate(data)
        except ValidationError as error:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors(include_url=False)
            )
            raise ConfigError(f"{origin} is not a valid run config: {problems}") from None

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)

    def with_overrides(self, overrides: dict[str, Any]) -> RunConfig:
        """Return a copy with dotted-path overrides applied (``{"teacher.model": "gpt-4o"}``)."""
        data = self.model_dump(mode="json")
        for dotted, value in overrides.items():
            node = data
            *parents, leaf = dotted.split(".")
            for part in parents:
                if not isinstance(node.get(part), dict):
                    raise ConfigError(f"override {dotted!r}: {part!r} is not a config section")
                node = node[part]
            node[leaf] = value
        return RunConfig.from_dict(data, origin="overrides")

    def fingerprint(self) -> str:
        """A short hash of the whole config, recorded in provenance."""
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]
