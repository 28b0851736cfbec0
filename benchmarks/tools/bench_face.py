"""Face detection precision/recall on the photos bundled in matplotlib and scikit-image.

Ground truth: hand-annotated face boxes (pixel xyxy, read off a 50-px grid) for grace_hopper,
astronaut and camera; zero faces in the other bundled photos; a collage of astronaut + grace_hopper
(2 faces). A detection matches a ground-truth face at IoU >= 0.4 (hand boxes are loose).
Second part: image-level "is there a face" on scikit-image's lfw_subset (100 face crops, 100
non-face crops, 25x25 upscaled to 100x100).

    .venv/bin/python benchmarks/tools/bench_face.py
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import matplotlib
import numpy as np
from PIL import Image
from skimage import data

from mmat.schema import ImageRef
from mmat.tools.face import FaceTool, MediaPipeFaceTool, YuFaceTool

GROUND_TRUTH: dict[str, list[list[float]]] = {
    "grace_hopper": [[165, 135, 360, 325]],
    "astronaut": [[180, 65, 265, 180]],
    "camera": [[185, 100, 260, 200]],
    "collage": [[180, 65, 265, 180], [512 + 165, 135, 512 + 360, 325]],
    **{
        name: []
        for name in (
            "coffee",
            "chelsea",
            "text",
            "rocket",
            "coins",
            "moon",
            "page",
            "horse",
            "brick",
            "hubble_deep_field",
            "immunohistochemistry",
            "retina",
            "cat",
            "clock",
            "logo",
        )
    },
}


def iou(a: list[float], b: list[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union else 0.0


def to_uint8(array: np.ndarray) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    return (np.clip(array, 0, 1) * 255).astype(np.uint8) if array.max() <= 1.0 else array.astype(np.uint8)


def photos(folder: Path) -> dict[str, ImageRef]:
    out = {
        "grace_hopper": ImageRef(
            path=str(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg")
        )
    }
    for name in GROUND_TRUTH:
        if name in ("grace_hopper", "collage"):
            continue
        image = Image.fromarray(to_uint8(getattr(data, name)()))
        image.convert("RGB").save(folder / f"{name}.png")
        out[name] = ImageRef(path=str(folder / f"{name}.png"))
    left = Image.open(folder / "astronaut.png").convert("RGB")
    right = Image.open(out["grace_hopper"].path).convert("RGB")
    canvas = Image.new("RGB", (left.width + right.width, max(left.height, right.height)), "white")
    canvas.paste(left, (0, 0))
    canvas.paste(right, (left.width, 0))
    canvas.save(folder / "collage.png")
    out["collage"] = ImageRef(path=str(folder / "collage.png"))
    return out


def box_level(tool: FaceTool, refs: dict[str, ImageRef]) -> dict[str, float]:
    tp = fp = fn = 0
    times = []
    for name, ref in refs.items():
        started = time.perf_counter()
        found = [face["box"] for face in tool.run([ref]).payload["faces"]]
        times.append(time.perf_counter() - started)
        unmatched = list(GROUND_TRUTH[name])
        for box in found:
            best = max(unmatched, key=lambda gt: iou(box, gt), default=None)
            if best is not None and iou(box, best) >= 0.4:
                tp += 1
                unmatched.remove(best)
            else:
                fp += 1
        fn += len(unmatched)
    return {
        "images": len(refs),
        "faces": tp + fn,
        "precision": round(tp / max(1, tp + fp), 3),
        "recall": round(tp / max(1, tp + fn), 3),
        "ms_per_image": round(1000 * sum(times[1:]) / max(1, len(times) - 1), 1),
    }


def lfw_level(tool: FaceTool, folder: Path) -> dict[str, float]:
    crops = data.lfw_subset()  # first 100 are faces, last 100 are not
    tp = fp = fn = tn = 0
    for index, crop in enumerate(crops):
        path = folder / f"lfw_{index}.png"
        Image.fromarray(to_uint8(crop)).convert("RGB").resize((100, 100), Image.Resampling.BICUBIC).save(path)
        has_face = bool(tool.run([ImageRef(path=str(path))]).payload["faces"])
        is_face = index < 100
        tp += has_face and is_face
        fp += has_face and not is_face
        fn += (not has_face) and is_face
        tn += (not has_face) and not is_face
    return {
        "images": len(crops),
        "precision": round(tp / max(1, tp + fp), 3),
        "recall": round(tp / max(1, tp + fn), 3),
    }


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        refs = photos(folder)
        report = {}
        for tool in (YuFaceTool(), MediaPipeFaceTool()):
            report[type(tool).__name__] = {
                "bundled_photos": box_level(tool, refs),
                "lfw_subset": lfw_level(tool, folder),
            }
        print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
