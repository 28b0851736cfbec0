"""The four stages after Foundation: rationale, reflection, integration, quality.

:func:`default_stages` gives the paper's pipeline in order; each stage's ``enabled(config)`` applies
the ablation switches, so the engine can skip a stage without the caller knowing why.
"""

from __future__ import annotations

from mmat.config import RunConfig
from mmat.stages.base import Stage, StageContext


def default_stages(config: RunConfig | None = None) -> list[Stage]:
    """Rationale -> Reflection -> Integration -> Quality, filtered by ``config`` when given."""
    from mmat.stages.integration import IntegrationStage
    from mmat.stages.quality import QualityStage
    from mmat.stages.rationale import RationaleStage
    from mmat.stages.reflection import ReflectionStage

    stages: list[Stage] = [RationaleStage(), ReflectionStage(), IntegrationStage(), QualityStage()]
    if config is None:
        return stages
    return [stage for stage in stages if stage.enabled(config)]


__all__ = ["Stage", "StageContext", "default_stages"]
