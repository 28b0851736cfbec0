"""W2, NeMo Data Designer side: the same chain as dependent columns of one Data Designer config.

Runs in benchmarks/engine/w2_dd/venv (``pip install data-designer``). Data Designer columns are
single-turn LLM calls, so each Rationale step sees the earlier steps and observations inside its user
prompt (Jinja); the operator rounds are custom cell-by-cell columns that sleep the mock tool latency;
then the final answer, the general and math reflection judges, and Integration as a custom column.
The prompts are the ones mmat sends (pre-rendered by w2_bench.py). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--records", required=True)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--tool-latency", type=float, default=0.03)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    os.environ.setdefault("DW2_KEY", "sk-local-benchmark")

    import data_designer.config as dd
    import pandas as pd
    from data_designer.interface.data_designer import DataDesigner

    rows = [json.loads(line) for line in Path(args.records).read_text().splitlines()]
    seed = pd.DataFrame(
        [
            {
                "rid": row["id"],
                "image": row["image_data_url"],
                "first": row["first"],
                "question_turn": row["question_turn"],
                "summarize": row["summarize"],
                "general_head": row["general_head"],
                "math_head": row["math_head"],
            }
            for row in rows
        ]
    )
    system, general_system, math_system = rows[0]["system"], rows[0]["general_system"], rows[0]["math_system"]
    provider = dd.ModelProvider(
        name="mock", endpoint=args.base_url, provider_type="openai", api_key="DW2_KEY"
    )
    model = dd.ModelConfig(
        alias="teacher",
        model="gpt-4o-mini",
        provider="mock",
        skip_health_check=True,
        inference_parameters=dd.ChatCompletionInferenceParams(
            max_tokens=1024, max_parallel_requests=args.concurrency
        ),
    )
    builder = dd.DataDesignerConfigBuilder(model_configs=[model])
    builder.with_seed_dataset(dd.DataFrameSeedSource(df=seed))
    image = [dd.ImageContext(column_name="image", data_type="url")]

    def tools_column(number: int) -> dd.CustomColumnConfig:
        @dd.custom_column_generator(required_columns=[f"step{number}"])
        def run_operators(row: dict) -> dict:
            try:
                operators = json.loads(row[f"step{number}"]).get("operators") or []
            except ValueError:
                operators = []
            texts = []
            for name in operators:
                time.sleep(args.tool_latency)
                texts.append(f"{name} output")
            observation = ("Here are results: " + " ".join(texts)) if texts else "No additional results."
            row[f"observation{number}"] = observation + f"\nWrite step {number + 1} as JSON."
            return row

        return dd.CustomColumnConfig(name=f"observation{number}", generator_function=run_operators)

    history = "{{ first }}"
    for number in (1, 2, 3):
        builder.add_column(
            dd.LLMTextColumnConfig(
                name=f"step{number}",
                model_alias="teacher",
                system_prompt=system,
                prompt=history,
                multi_modal_context=image,
            )
        )
        if number < 3:
            builder.add_column(tools_column(number))
            history += f"\nassistant: {{{{ step{number} }}}}\nuser: {{{{ observation{number} }}}}"
    builder.add_column(
        dd.LLMTextColumnConfig(
            name="answer_pred",
            model_alias="teacher",
            system_prompt=system,
            prompt=history + "\nassistant: {{ step3 }}\n{{ summarize }}",
            multi_modal_context=image,
        )
    )
    transcript = (
        "user: {{ question_turn }}\nassistant: {{ step1 }}\nuser: {{ observation1 }}\n"
        "assistant: {{ step2 }}\nuser: {{ observation2 }}\nassistant: {{ step3 }}"
    )
    for kind, judge_system in (("general", general_system), ("math", math_system)):
        builder.add_column(
            dd.LLMTextColumnConfig(
                name=kind,
                model_alias="teacher",
                system_prompt=judge_system,
                prompt="{{ " + kind + "_head }}" + transcript,
                multi_modal_context=image,
            )
        )

    @dd.custom_column_generator(
        required_columns=["step1", "step2", "step3", "answer_pred", "general", "math"]
    )
    def integrate(row: dict) -> dict:
        thoughts = []
        for number in (1, 2, 3):
            try:
                thoughts.append(json.loads(row[f"step{number}"])["thought"])
            except (ValueError, KeyError):
                thoughts.append(row[f"step{number}"])
        row["orr"] = (
            f"<THOUGHT>{' '.join(thoughts)}</THOUGHT><ANSWER>The answer is: {row['answer_pred']}</ANSWER>"
        )
        return row

    builder.add_column(dd.CustomColumnConfig(name="orr", generator_function=integrate))
    designer = DataDesigner(artifact_path=args.out, model_providers=[provider])
    designer.set_run_config(dd.RunConfig(buffer_size=len(rows)))
    cpu0, wall0 = time.process_time(), time.perf_counter()
    result = designer.create(builder, num_records=len(rows), dataset_name="w2")
    frame = result.load_dataset()
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    done = int(frame["orr"].notna().sum()) if "orr" in frame else 0
    print(
        json.dumps(
            {
                "tool": "datadesigner",
                "wall_s": wall,
                "cpu_s": cpu,
                "accepted": done,
                "rejected": len(rows) - done,
            }
        )
    )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
