"""``mmat build``: sources -> the engine running the four stages -> exporters -> the statistics report."""

from mmat.pipeline.build import BuildResult, build, build_async
from mmat.pipeline.report import InputTally, build_report, render_markdown, write_report

__all__ = [
    "BuildResult",
    "InputTally",
    "build",
    "build_async",
    "build_report",
    "render_markdown",
    "write_report",
]
