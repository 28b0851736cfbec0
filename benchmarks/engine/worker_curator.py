"""One Bespoke Curator run against the mock teacher (runs in benchmarks/engine/venv).

Prints one JSON line: wall seconds and CPU seconds of the run call, rows answered.
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
    parser.add_argument("--images", required=True)
    parser.add_argument("--n", type=int, required=True)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rpm", type=int, default=1_000_000)
    parser.add_argument("--tpm", type=int, default=10_000_000_000)
    parser.add_argument("--cache", required=True)
    parser.add_argument("--tag", default="")
    args = parser.parse_args()
    os.environ["CURATOR_CACHE_DIR"] = args.cache
    logging.disable(logging.WARNING)

    from bespokelabs import curator

    images = sorted(Path(args.images).glob("*.jpg"))

    class Describe(curator.LLM):
        def prompt(self, row: dict) -> tuple:
            return (
                f"{args.tag}Describe image {row['i']} in one sentence.",
                curator.types.Image(url=row["path"]),
            )

        def parse(self, row: dict, response: str) -> dict:
            return {"i": row["i"], "response": response}

    rows = [{"i": i, "path": str(images[i % len(images)])} for i in range(args.n)]
    llm = Describe(
        model_name="gpt-4o-mini",
        backend="openai",
        generation_params={"max_tokens": 64},
        backend_params={
            "base_url": args.base_url,
            "api_key": "sk-local-benchmark",
            "max_requests_per_minute": args.rpm,
            "max_tokens_per_minute": args.tpm,
            "max_concurrent_requests": args.concurrency,
            "max_retries": 20,
            "seconds_to_pause_on_rate_limit": 1,
            "require_all_responses": False,
        },
    )
    cpu0, wall0 = time.process_time(), time.perf_counter()
    result = llm(rows)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    dataset = getattr(result, "dataset", result)
    distinct = len(set(dataset["i"])) if len(dataset) else 0
    print(
        json.dumps(
            {"tool": "curator", "wall_s": wall, "cpu_s": cpu, "rows": len(dataset), "distinct_rows": distinct}
        )
    )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
