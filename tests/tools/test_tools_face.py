"""Face detection on real photos: one face in grace_hopper and astronaut, none in coffee."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from mmat.schema import ImageRef
from mmat.tools.face import MediaPipeFaceTool, YuFaceTool, render_faces

BACKENDS = [
    pytest.param(YuFaceTool, id="yuface"),
    pytest.param(
        MediaPipeFaceTool,
        id="mediapipe",
        marks=pytest.mark.skipif(
            importlib.util.find_spec("mediapipe") is None, reason="mediapipe not installed"
        ),
    ),
]


def inside(box: list[float], outer: tuple[float, float, float, float], slack: float = 25) -> bool:
    return (
        box[0] >= outer[0] - slack
        and box[1] >= outer[1] - slack
        and box[2] <= outer[2] + slack
        and box[3] <= outer[3] + slack
    )


@pytest.mark.parametrize("backend", BACKENDS)
def test_one_face_in_grace_hopper(backend, grace_hopper) -> None:
    result = backend().run([grace_hopper])
    assert result.ok
    faces = result.payload["faces"]
    assert len(faces) == 1
    # her face spans about x 170-360, y 120-335 of the 512x600 photo
    assert inside(faces[0]["box"], (170, 120, 360, 335))
    assert result.text.startswith("There is one face with a coordinate: [")
    assert result.text == render_faces([faces[0]["box"]])


@pytest.mark.parametrize("backend", BACKENDS)
def test_faces_and_no_faces_in_skimage_photos(backend, skimage_photos) -> None:
    tool = backend()
    assert len(tool.run([skimage_photos["astronaut"]]).payload["faces"]) == 1
    for name in ("coffee", "chelsea", "text"):
        result = tool.run([skimage_photos[name]])
        assert result.payload["faces"] == [], name
        assert result.text == "There is no face in the image."


def test_two_faces_are_listed_left_to_right(grace_hopper, skimage_photos, tmp_path: Path) -> None:
    from PIL import Image

    from mmat.images import load_image

    left, right = load_image(skimage_photos["astronaut"]), load_image(grace_hopper)
    canvas = Image.new("RGB", (left.width + right.width, max(left.height, right.height)), "white")
    canvas.paste(left, (0, 0))
    canvas.paste(right, (left.width, 0))
    canvas.save(tmp_path / "two.png")
    result = YuFaceTool().run([ImageRef(path=str(tmp_path / "two.png"))])
    boxes = [face["box"] for face in result.payload["faces"]]
    assert len(boxes) == 2 and boxes[0][0] < left.width < boxes[1][0]
    assert result.text.startswith("There are 2 faces with coordinates: [")


def test_render_faces_formats() -> None:
    assert render_faces([]) == "There is no face in the image."
    assert (
        render_faces([[454, 301, 883, 838]])
        == "There is one face with a coordinate: [454.0, 301.0, 883.0, 838.0]"
    )
    assert (
        render_faces([[1, 2, 3, 4], [5.25, 6, 7, 8]])
        == "There are 2 faces with coordinates: [1.0, 2.0, 3.0, 4.0], [5.2, 6.0, 7.0, 8.0]"
    )
