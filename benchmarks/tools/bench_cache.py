"""Tool calls executed vs requested when 20% of the requests repeat an image.

100 ``face_detection`` requests over 80 distinct images (crops of the bundled photos; 20 requests
repeat an earlier image), shuffled and issued all at once through one ToolRunner (2 workers), as the
engine does with many samples in flight. Then the same workload again on a new runner sharing the
on-disk cache (a rerun after a crash). Target: executions == unique keys, then 0.

    .venv/bin/python benchmarks/tools/bench_cache.py
"""

from __future__ import annotations

import asyncio
import json
import random
import tempfile
import time
from pathlib import Path

import matplotlib
from PIL import Image
from skimage import data

from mmat.config import RunConfig
from mmat.schema import ImageRef
from mmat.tools.runner import ToolRunner

UNIQUE = 80
REQUESTS = 100


def make_images(folder: Path) -> list[ImageRef]:
    sources = [
        Image.open(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg").convert("RGB"),
        Image.fromarray(data.astronaut()),
        Image.fromarray(data.coffee()),
        Image.fromarray(data.chelsea()),
    ]
    refs = []
    for index in range(UNIQUE):
        source = sources[index % len(sources)]
        offset = 2 * (index // len(sources))
        crop = source.crop((offset, offset, source.width - offset, source.height - offset))
        path = folder / f"img{index:03d}.png"
        crop.save(path)
        refs.append(ImageRef(path=path.name, root=str(folder)))
    return refs


async def workload(refs: list[ImageRef], cache_dir: Path, seed: int = 0) -> dict[str, float]:
    rng = random.Random(seed)
    requests = refs + [rng.choice(refs) for _ in range(REQUESTS - len(refs))]
    rng.shuffle(requests)
    config = RunConfig.from_dict({"tools": {"enabled": ["face_detection"], "workers": 2}})
    async with ToolRunner(config, cache_dir=cache_dir) as runner:
        started = time.perf_counter()
        results = await asyncio.gather(*(runner.run("face_detection", [ref]) for ref in requests))
        wall = time.perf_counter() - started
        stats = dict(runner.stats)
    return {
        "requests": len(requests),
        "unique_keys": len({r.cache_key for r in results}),
        "executions": stats.get("executions", 0),
        "shared_in_flight": stats.get("shared", 0),
        "disk_cache_hits": stats.get("cache_hits", 0),
        "errors": stats.get("errors", 0),
        "faces_found_in": sum(bool(r.payload["faces"]) for r in results),
        "wall_s": round(wall, 2),
    }


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        refs = make_images(folder)
        first = asyncio.run(workload(refs, folder / "cache"))
        rerun = asyncio.run(workload(refs, folder / "cache", seed=1))
    print(json.dumps({"first_run": first, "rerun_same_cache": rerun}, indent=2))


if __name__ == "__main__":
    main()
