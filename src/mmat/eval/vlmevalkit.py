"""Using mmat with VLMEvalKit: a model class wrapping the agent, and predictions in VLMEvalKit's format.

Official numbers: let VLMEvalKit drive the agent
------------------------------------------------
:class:`MmatAgentVLM` is a VLMEvalKit model (a ``vlmeval.vlm.base.BaseModel`` when VLMEvalKit is
installed; importable without it). Register it in VLMEvalKit's ``vlmeval/config.py`` and run as usual::

    from functools import partial
    from mmat.eval.vlmevalkit import MmatAgentVLM

    supported_VLM["mmat-8b-rr"] = partial(
        MmatAgentVLM, base_url="http://127.0.0.1:8000/v1", model="mmat-8b", mode="rr"
    )
    # then: python run.py --data MMStar OCRBench --model mmat-8b-rr

It sends VLMEvalKit's own prompts (``use_custom_prompt`` is False) through ``Agent.answer`` in the
chosen mode and returns the final answer; a run that ends without one returns the model's last
output, so VLMEvalKit's extractors still see something to score.

mmat's own runs, VLMEvalKit's scoring
-------------------------------------
``mmat eval export OUT --bench MMStar --data MMStar.tsv --mode rr`` (or :func:`export_predictions`)
writes ``{model}_{dataset}.xlsx`` — the TSV's columns without ``image`` plus ``prediction`` — which
VLMEvalKit's ``run.py --mode eval`` scores. Without ``openpyxl`` it writes ``.tsv``; run VLMEvalKit
with ``PRED_FORMAT=tsv`` to read it. Dyn-VQA is not a VLMEvalKit benchmark: its export is the JSONL
(``prediction`` and ``answer`` per line) that OmniSearch's ``evaluate.py`` reads.
"""

from __future__ import annotations

import asyncio
import csv
import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mmat.agent.result import AgentMode
from mmat.errors import ConfigError, MissingDependencyError
from mmat.schema import ImageRef

try:  # a real VLMEvalKit model when VLMEvalKit is installed
    from vlmeval.vlm.base import BaseModel as _VlmBase  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - depends on the environment
    _VlmBase = object


class MmatAgentVLM(_VlmBase):  # type: ignore[misc,valid-type]
    """A VLMEvalKit model that answers through the mmat agent (baseline, ORR or RR).

    Example:
        >>> vlm = MmatAgentVLM(base_url="http://127.0.0.1:8000/v1", model="mmat-8b", mode="rr")
        >>> vlm.generate([{"type": "image", "value": "demo.jpg"}, {"type": "text", "value": "What is it?"}])

    Args:
        base_url: OpenAI-compatible API root of the tuned model.
        model: the model name the server expects.
        mode: ``baseline``, ``orr`` or ``rr``.
        tools: a tool provider; ``"default"`` builds the run config's operators, ``None`` runs without.
        api_key_env: environment variable holding the model's API key.
        max_steps: RR step limit; ``time_limit_s``: per-question wall-time limit.
    """

    INTERLEAVE = False
    is_api = True

    def __init__(
        self,
        base_url: str,
        model: str,
        mode: str = "rr",
        *,
        tools: Any = "default",
        api_key_env: str | None = None,
        max_steps: int = 8,
        time_limit_s: float | None = None,
        **kwargs: Any,
    ) -> None:
        if _VlmBase is not object:
            super().__init__()
        if mode not in ("baseline", "orr", "rr"):
            raise ConfigError(f"unknown agent mode {mode!r}; valid modes: baseline, orr, rr")
        from mmat.agent.models import OpenAIModel
        from mmat.agent.runtime import Agent

        if tools == "default":
            from mmat.config import RunConfig
            from mmat.tools.runner import ToolRunner

            tools = ToolRunner(RunConfig())
        self.mode: AgentMode = mode  # type: ignore[assignment]
        self.agent = Agent(
            OpenAIModel(base_url, model, api_key_env=api_key_env),
            tools,
            max_steps=max_steps,
            time_limit_s=time_limit_s,
        )
        self.last_result: Any = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="mmat-agent-loop", daemon=True)
        self._thread.start()

    def use_custom_prompt(self, dataset: str | None) -> bool:
        """VLMEvalKit builds the prompts (its defaults), so scores compare with other models'."""
        return False

    def generate_inner(self, message: Sequence[dict[str, Any]], dataset: str | None = None) -> str:
        """Answer one VLMEvalKit message (a list of ``{"type": "image"|"text", "value": ...}``)."""
        images = [ImageRef(path=str(part["value"])) for part in message if part.get("type") == "image"]
        text = "\n".join(str(part["value"]) for part in message if part.get("type") == "text")
        future = asyncio.run_coroutine_threadsafe(self.agent.answer(images, text, mode=self.mode), self._loop)
        result = future.result()
        self.last_result = result
        return result.answer if result.ok else result.raw_output

    if _VlmBase is object:

        def generate(self, message: Sequence[dict[str, Any]] | str, dataset: str | None = None) -> str:
            """VLMEvalKit's entry point (stand-in while VLMEvalKit is not installed)."""
            if isinstance(message, str):
                message = [{"type": "text", "value": message}]
            return self.generate_inner(message, dataset)

    def close(self) -> None:
        """Stop the background event loop."""
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)


def export_predictions(
    out_dir: str | Path,
    bench_name: str,
    data: str | Path,
    mode: str,
    *,
    model_name: str = "mmat",
    fmt: str = "auto",
    setting: str = "query",
) -> Path:
    """Write the predictions of one run in VLMEvalKit's format (OmniSearch's for Dyn-VQA).

    Returns:
        The written file: ``OUT/<run key>/<mode>/vlmevalkit/{model}_{dataset}.{xlsx|tsv}``.

    Raises:
        ConfigError: the run has no predictions, or ``fmt`` is unknown.
        MissingDependencyError: ``fmt="xlsx"`` without openpyxl.
    """
    from mmat.eval.benchmarks import get_benchmark
    from mmat.eval.runner import PREDICTIONS, PredictionLog
    from mmat.eval.tsv import read_tsv

    bench = get_benchmark(bench_name)
    out_dir = Path(out_dir)
    if bench.kind == "dynvqa":
        from mmat.eval.cli import run_key
        from mmat.eval.dynvqa import load_dynvqa

        items = load_dynvqa(data, setting=setting)  # type: ignore[arg-type]
        mode_dir = out_dir / run_key(bench.name, list(items), setting) / mode
        records = _records(PredictionLog(mode_dir / PREDICTIONS), mode_dir)
        target = mode_dir / "vlmevalkit" / f"{model_name}_{Path(data).stem}.jsonl"
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("w", encoding="utf-8") as handle:
            for item in items:
                record = records.get(item.index)
                row = {
                    "question_id": item.index,
                    "question": item.prompt,
                    "answer": item.meta.get("gold_raw", item.answers),
                    "prediction": record.prediction if record and record.ok else "",
                }
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        return target
    mode_dir = out_dir / bench.name / mode
    records = _records(PredictionLog(mode_dir / PREDICTIONS), mode_dir)
    rows = [row for _, row in read_tsv(data)]
    columns = [c for c in rows[0] if c != "image"] if rows else ["index"]
    for row in rows:
        record = records.get(row.get("index", ""))
        row["prediction"] = record.prediction if record and record.ok else ""
    columns.append("prediction")
    if fmt not in ("auto", "xlsx", "tsv"):
        raise ConfigError(f"unknown export format {fmt!r}; use auto, xlsx or tsv")
    if fmt in ("auto", "xlsx"):
        try:
            import openpyxl  # type: ignore[import-untyped]
        except ImportError as error:
            if fmt == "xlsx":
                raise MissingDependencyError("xlsx export (openpyxl)", "eval", error) from None
            fmt = "tsv"
        else:
            fmt = "xlsx"
    target = mode_dir / "vlmevalkit" / f"{model_name}_{bench.name}.{fmt}"
    target.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "xlsx":
        book = openpyxl.Workbook()
        sheet = book.active
        sheet.append(columns)
        for row in rows:
            sheet.append([row.get(c, "") for c in columns])
        book.save(target)
    else:
        with target.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle, delimiter="\t")
            writer.writerow(columns)
            for row in rows:
                writer.writerow([row.get(c, "") for c in columns])
    return target


def _records(log: Any, mode_dir: Path) -> dict[str, Any]:
    records: dict[str, Any] = log.load()
    if not records:
        raise ConfigError(f"no predictions in {mode_dir}; run `mmat eval` for this benchmark and mode first")
    return records
