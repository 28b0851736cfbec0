"""W2, Bespoke Curator side: the same chain as mmat, flattened into chained ``curator.LLM`` stages.

Runs in benchmarks/engine/venv. Rationale with 2 operator rounds becomes: step 1 (LLM) -> operators
(mock latency, run concurrently) -> step 2 (LLM) -> operators -> step 3 (LLM) -> final answer (LLM) ->
general reflection (LLM) -> math reflection (LLM) -> Integration (Python). Every LLM stage sends the
same prompts mmat sends (pre-rendered by w2_bench.py) to the same mock teacher. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--records", required=True)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--tool-latency", type=float, default=0.03)
    parser.add_argument("--cache", required=True)
    args = parser.parse_args()
    os.environ["CURATOR_CACHE_DIR"] = args.cache
    os.environ.setdefault("CURATOR_DISABLE_CACHE", "1")
    logging.disable(logging.WARNING)

    from bespokelabs import curator

    rows = [json.loads(line) for line in Path(args.records).read_text().splitlines()]
    backend_params = {
        "base_url": args.base_url,
        "api_key": "sk-local-benchmark",
        "max_requests_per_minute": 1_000_000,
        "max_tokens_per_minute": 10_000_000_000,
        "max_concurrent_requests": args.concurrency,
        "max_retries": 3,
        "require_all_responses": False,
    }

    def user_first(row: dict) -> dict:
        return {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": row["image_data_url"]}},
                {"type": "text", "text": row["first"]},
            ],
        }

    def history(row: dict, upto: int) -> list[dict]:
        messages = [{"role": "system", "content": row["system"]}, user_first(row)]
        for k in range(upto):
            messages.append({"role": "assistant", "content": row[f"step{k + 1}"]})
            messages.append({"role": "user", "content": row[f"observation{k + 1}"]})
        return messages

    class Step(curator.LLM):
        def __init__(self, number: int) -> None:
            self.number = number
            super().__init__(
                model_name="gpt-4o-mini",
                backend="openai",
                generation_params={"max_tokens": 1024, "response_format": {"type": "json_object"}},
                backend_params=backend_params,
            )

        def prompt(self, row: dict) -> list[dict]:
            return history(row, self.number - 1)

        def parse(self, row: dict, response: str) -> dict:
            return {**row, f"step{self.number}": response}

    class Answer(curator.LLM):
        def prompt(self, row: dict) -> list[dict]:
            messages = history(row, 2)
            messages.append({"role": "assistant", "content": row["step3"]})
            messages.append({"role": "user", "content": row["summarize"]})
            return messages

        def parse(self, row: dict, response: str) -> dict:
            return {**row, "answer_pred": response}

    class Judge(curator.LLM):
        def __init__(self, kind: str) -> None:
            self.kind = kind
            super().__init__(
                model_name="gpt-4o-mini",
                backend="openai",
                generation_params={"max_tokens": 1024, "response_format": {"type": "json_object"}},
                backend_params=backend_params,
            )

        def prompt(self, row: dict) -> list[dict]:
            transcript = "\n".join(
                [f"user: {row['question_turn']}"]
                + [f"assistant: {row[f'step{k}']}\nuser: {row[f'observation{k}']}" for k in (1, 2)]
                + [f"assistant: {row['step3']}"]
            )
            return [
                {"role": "system", "content": row[f"{self.kind}_system"]},
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"url": row["image_data_url"]}},
                        {"type": "text", "text": row[f"{self.kind}_head"] + transcript},
                    ],
                },
            ]

        def parse(self, row: dict, response: str) -> dict:
            return {**row, self.kind: response}

    pool = ThreadPoolExecutor(max_workers=args.concurrency)

    def run_operators(dataset: object, number: int) -> list[dict]:
        """The operators each row's step asked for, concurrently, with mock latency (flattened round)."""

        def one(row: dict) -> dict:
            step = json.loads(row[f"step{number}"])
            texts = []
            for name in step.get("operators") or []:
                time.sleep(args.tool_latency)
                texts.append(f"{name} output")
            observation = ("Here are results: " + " ".join(texts)) if texts else "No additional results."
            return {**row, f"observation{number}": observation + f"\nWrite step {number + 1} as JSON."}

        return list(pool.map(one, list(dataset)))  # type: ignore[call-overload]

    cpu0, wall0 = time.process_time(), time.perf_counter()
    data: object = rows
    data = Step(1)(data).dataset
    data = run_operators(data, 1)
    data = Step(2)(data).dataset
    data = run_operators(data, 2)
    data = Step(3)(data).dataset
    data = Answer(
        model_name="gpt-4o-mini",
        backend="openai",
        generation_params={"max_tokens": 1024},
        backend_params=backend_params,
    )(data).dataset
    data = Judge("general")(data).dataset
    data = Judge("math")(data).dataset
    final = []
    for row in data:  # Integration in Python: merge the thoughts into one ORR answer
        thoughts = [json.loads(row[f"step{k}"])["thought"] for k in (1, 2, 3)]
        final.append(
            f"<THOUGHT>{' '.join(thoughts)}</THOUGHT><ANSWER>The answer is: {row['answer_pred']}</ANSWER>"
        )
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    print(
        json.dumps(
            {
                "tool": "curator",
                "wall_s": wall,
                "cpu_s": cpu,
                "accepted": len(final),
                "rejected": len(rows) - len(final),
            }
        )
    )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
