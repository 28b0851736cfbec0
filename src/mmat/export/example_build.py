"""A small, realistic build output written without a teacher: for tests, demos and the viewer.

:func:`write_example_build` draws PNG images with PIL and writes accepted samples (RR trajectories
built with :mod:`mmat.wire`, ORR forms, quality scores, provenance, OVD and face results with boxes),
rejects and ``stats.json`` in the layout of :mod:`mmat.store`. Sources rotate over Visual CoT,
TabMWP (non-commercial) and LLaVA-CoT so that licences, filters and charts have something to show.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

from mmat.schema import (
    QA,
    ApiBlock,
    ImageRef,
    OrrSample,
    OrrSegment,
    Provenance,
    Quality,
    Reflection,
    ReflectionKind,
    Reject,
    Sample,
    Segment,
    Signal,
    Step,
    ToolResult,
    Trajectory,
    Turn,
)
from mmat.store import ACCEPTED_DIR, REJECTS_DIR, STATS_FILE, shard_file
from mmat.wire import (
    ORR_SYSTEM_PROMPT,
    answer_turn,
    observation_turn,
    question_turn,
    reflection_prompt_turn,
    render_orr_answer,
    render_orr_user,
    render_rr_system,
    step_turn,
    summarize_turn,
)

EXAMPLE_SOURCES = (
    ("visual_cot", "Apache-2.0", False),
    ("tabmwp", "CC BY-NC-SA 4.0", True),
    ("llava_cot", "Apache-2.0", False),
)
EXAMPLE_PROVENANCE = Provenance(
    mmat_version="0.1.0",
    teacher="openai",
    teacher_model="example-teacher",
    prompt_hashes={"rationale": "sha256:" + "1" * 16, "reflection": "sha256:" + "2" * 16},
    tool_versions={"image_caption": "teacher-ccot-1", "label_bbox": "owlv2-1", "face_detection": "yunet-1"},
)
IMAGE_SIZE = (320, 240)
_LABELS = ("cat", "sign", "cup", "car")


def _draw_image(path: Path, seed: int) -> tuple[str, dict[str, list[list[float]]], list[list[float]]]:
    """Draw a PNG with two coloured objects and one face-like ellipse; return sha256 and true boxes."""
    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    width, height = IMAGE_SIZE
    image = Image.new("RGB", IMAGE_SIZE, (235, 235, 225))
    draw = ImageDraw.Draw(image)
    objects: dict[str, list[list[float]]] = {}
    for label in rng.sample(_LABELS, 2):
        x1, y1 = rng.randint(5, width // 2), rng.randint(5, height // 2)
        x2, y2 = x1 + rng.randint(40, width // 2 - 10), y1 + rng.randint(30, height // 2 - 10)
        draw.rectangle((x1, y1, x2, y2), fill=tuple(rng.randint(40, 200) for _ in range(3)))
        objects[label] = [
            [round(x1 / width, 2), round(y1 / height, 2), round(x2 / width, 2), round(y2 / height, 2)]
        ]
    fx, fy = rng.randint(150, 250), rng.randint(20, 150)
    draw.ellipse((fx, fy, fx + 50, fy + 64), fill=(224, 172, 140))
    faces = [[float(fx), float(fy), float(fx + 50), float(fy + 64)]]
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="PNG")
    return hashlib.sha256(path.read_bytes()).hexdigest(), objects, faces


def _segment(
    rng: random.Random,
    qa: QA,
    objects: dict[str, list[list[float]]],
    faces: list[list[float]],
    *,
    reflect: bool,
    placeholders: int,
    rag: bool,
) -> tuple[Segment, list[ApiBlock], list[str]]:
    """One RR segment with caption + OVD, face detection, optional RAG and reflection; plus ORR parts."""
    caption = f"A picture of a {' and a '.join(objects)} next to a person."
    ovd_text = repr(objects)
    face_text = f"There is one face with a coordinate: {faces[0]}"
    turns: list[Turn] = [question_turn(qa.templated_question, image_placeholders=placeholders)]
    thoughts = []
    step1 = Step(
        thought="First I look at the whole picture and find the objects.",
        operators=["image_caption", "label_bbox"],
    )
    turns.append(step_turn(step1))
    observation = observation_turn([("image_caption", caption), ("label_bbox", ovd_text)])
    observation.results = [
        ToolResult(tool="image_caption", version="teacher-ccot-1", text=caption),
        ToolResult(tool="label_bbox", version="owlv2-1", payload=objects, text=ovd_text),
    ]
    turns.append(observation)
    thoughts.append(step1.thought)
    step2 = Step(thought="Now I check whether a person is in the picture.", operators=["face_detection"])
    turns.append(step_turn(step2))
    face_obs = observation_turn([("face_detection", face_text)])
    face_obs.results = [ToolResult(tool="face_detection", version="yunet-1", payload=faces, text=face_text)]
    turns.append(face_obs)
    thoughts.append(step2.thought)
    if rag:
        step3 = Step(
            thought="I need background knowledge about the object.",
            rag_query=f"what is a {next(iter(objects))}",
        )
        turns.append(step_turn(step3))
        snippet = f"A {next(iter(objects))} is a common thing."
        rag_obs = observation_turn([("rag", snippet)])
        rag_obs.results = [
            ToolResult(tool="rag", version="bm25-1", payload=[{"text": snippet}], text=snippet)
        ]
        turns.append(rag_obs)
        thoughts.append(step3.thought)
    reflections: list[Reflection] = []
    if reflect:
        trigger = Step(
            thought="Wait, my reasoning could use more math: I skipped how the count follows.",
            signal=Signal.REFLECTION,
        )
        reflections.append(
            Reflection(
                kind=rng.choice([ReflectionKind.MATH, ReflectionKind.GENERAL]),
                reason="a derivation step was skipped",
                trigger_turn=len(turns),
            )
        )
        turns.append(step_turn(trigger))
        turns.append(reflection_prompt_turn())
        fixed = Step(thought=f"Counting the objects one by one gives {qa.answer}.", signal=Signal.END)
        turns.append(step_turn(fixed))
        thoughts += [trigger.thought, fixed.thought]
    else:
        final = Step(thought=f"So the answer is {qa.answer}.", signal=Signal.END)
        turns.append(step_turn(final))
        thoughts.append(final.thought)
    turns.append(summarize_turn(qa.question))
    turns.append(answer_turn(qa.answer))
    blocks = [
        ApiBlock(tool="image_caption", text=caption),
        ApiBlock(tool="label_bbox", text=ovd_text),
        ApiBlock(tool="face_detection", text=face_text),
    ]
    return Segment(qa_id=qa.qa_id, turns=turns, reflections=reflections, verified=True), blocks, thoughts


def example_sample(index: int, image_root: Path, *, seed: int = 0) -> Sample:
    """One accepted sample with a trajectory, ORR form, quality and provenance."""
    rng = random.Random(seed * 100_003 + index)
    source, licence, non_commercial = EXAMPLE_SOURCES[index % len(EXAMPLE_SOURCES)]
    n_images = 2 if index % 5 == 4 else 1
    images: list[ImageRef] = []
    objects: dict[str, list[list[float]]] = {}
    faces: list[list[float]] = []
    for i in range(n_images):
        relative = f"{source}/img-{index:06d}-{i}.png"
        sha, drawn, drawn_faces = _draw_image(image_root / relative, seed * 7919 + index * 31 + i)
        if i == 0:
            objects, faces = drawn, drawn_faces
        images.append(
            ImageRef(
                path=relative, root=str(image_root), sha256=sha, width=IMAGE_SIZE[0], height=IMAGE_SIZE[1]
            )
        )
    n_qas = 2 if index % 4 == 3 else 1
    qas = []
    for q in range(n_qas):
        label = list(objects)[q % len(objects)]
        question = f"How many {label}s are in the image?"
        qas.append(
            QA(
                qa_id=f"{q}",
                question=question,
                templated_question=f"{question} Answer the question using a single word or phrase.",
                answer=str(1 + q),
            )
        )
    segments: list[Segment] = []
    orr_segments: list[OrrSegment] = []
    for q, qa in enumerate(qas):
        placeholders = n_images if (q == 0 and index % 2 == 0) else 0
        segment, blocks, thoughts = _segment(
            rng, qa, objects, faces, reflect=index % 3 == 1, placeholders=placeholders, rag=index % 4 == 2
        )
        segments.append(segment)
        thought = " ".join(thoughts)
        orr_segments.append(
            OrrSegment(
                qa_id=qa.qa_id,
                user=render_orr_user(
                    qa.templated_question, blocks, image_placeholders=n_images if q == 0 else 0
                ),
                assistant=render_orr_answer(thought, qa.answer),
                api_blocks=blocks,
                thought=thought,
                answer=qa.answer,
            )
        )
    return Sample(
        id=f"{source}/example/{index:06d}",
        source=source,
        subset="example",
        split="train",
        license=licence,
        non_commercial=non_commercial,
        images=images,
        qas=qas,
        trajectory=Trajectory(system=render_rr_system(), segments=segments, provenance=EXAMPLE_PROVENANCE),
        orr=OrrSample(system=ORR_SYSTEM_PROMPT, segments=orr_segments),
        quality=Quality(score=round(0.35 + 0.6 * rng.random(), 2), reason="coherent and grounded"),
    )


def example_reject(index: int) -> Reject:
    source = EXAMPLE_SOURCES[index % len(EXAMPLE_SOURCES)][0]
    reason, stage = [
        ("reasoning_cheating", "reflection"),
        ("low_quality", "quality"),
        ("image_missing", "foundation"),
    ][index % 3]
    return Reject(
        id=f"{source}/example/r{index:06d}",
        source=source,
        stage=stage,
        reason=reason,
        detail=f"example reject {index}: {reason.replace('_', ' ')}",
    )


def write_example_build(
    out_dir: str | Path,
    *,
    samples: int = 12,
    rejects: int = 4,
    shard_size: int = 1000,
    image_root: str | Path | None = None,
    seed: int = 0,
) -> Path:
    """Write a build output of ``samples`` accepted samples and ``rejects`` rejects; return ``out_dir``.

    Images go to ``image_root`` (default ``out_dir/source_images``) and are referenced relative to it.
    """
    out = Path(out_dir)
    root = Path(image_root) if image_root is not None else out / "source_images"
    for kind, count, make in (
        (ACCEPTED_DIR, samples, lambda i: example_sample(i, root, seed=seed)),
        (REJECTS_DIR, rejects, example_reject),
    ):
        handle = None
        for i in range(count):
            if i % shard_size == 0:
                if handle is not None:
                    handle.close()
                path = shard_file(out, kind, i // shard_size)
                path.parent.mkdir(parents=True, exist_ok=True)
                handle = path.open("w", encoding="utf-8")
            assert handle is not None
            handle.write(make(i).model_dump_json(exclude_none=True) + "\n")
        if handle is not None:
            handle.close()
    (out / STATS_FILE).write_text(json.dumps({"kept": samples, "rejected": rejects}) + "\n", encoding="utf-8")
    return out
