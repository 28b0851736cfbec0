"""Prompts are data: versioned YAML files in ``stages/prompts/``, loaded with importlib.resources.

Each file holds a ``name``, a ``version``, a ``system`` prompt and named user ``templates`` written
with ``$variables`` (:class:`string.Template`, so JSON braces need no escaping). The hash of the whole
file goes into every teacher call made with it (the engine's cache key) and into record provenance,
so editing one stage's prompt re-pays only that stage's calls.

Example:
    >>> prompt = load_prompt("rationale")
    >>> prompt.render("first", question="How much?", answer="8.80", ...)
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from string import Template
from typing import Any

import yaml

from mmat.errors import ConfigError

PROMPT_NAMES = ("rationale", "general_reflection", "math_reflection", "repair", "quality")
"""The prompts the four stages use, one YAML file each."""


@dataclass(frozen=True)
class PromptTemplate:
    """One stage prompt: a system text, user templates and the hash that keys its calls."""

    name: str
    version: str
    system: str
    templates: dict[str, str]
    hash: str
    extra: dict[str, Any] = field(default_factory=dict)

    def render(self, key: str, **values: Any) -> str:
        """Fill template ``key``; a missing variable is an error naming it."""
        if key not in self.templates:
            raise ConfigError(
                f"prompt {self.name!r} has no template {key!r}; it has: {', '.join(sorted(self.templates))}"
            )
        try:
            return Template(self.templates[key]).substitute({k: str(v) for k, v in values.items()})
        except KeyError as error:
            raise ConfigError(
                f"prompt {self.name!r} template {key!r} needs ${error.args[0]}; pass it to render()"
            ) from None

    def render_system(self, **values: Any) -> str:
        try:
            return Template(self.system).substitute({k: str(v) for k, v in values.items()})
        except KeyError as error:
            raise ConfigError(f"prompt {self.name!r} system text needs ${error.args[0]}") from None


def parse_prompt(text: str, *, origin: str) -> PromptTemplate:
    """Parse one prompt YAML document (used for package files and for user overrides)."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"prompt file {origin} is not valid YAML: {error}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"prompt file {origin} must be a mapping with name, version, system, templates")
    missing = [key for key in ("name", "version", "system", "templates") if key not in data]
    if missing:
        raise ConfigError(f"prompt file {origin} lacks {', '.join(missing)}")
    templates = data["templates"]
    if not isinstance(templates, dict) or not all(isinstance(v, str) for v in templates.values()):
        raise ConfigError(f"prompt file {origin}: templates must map names to strings")
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
    extra = {k: v for k, v in data.items() if k not in ("name", "version", "system", "templates")}
    return PromptTemplate(
        name=str(data["name"]),
        version=str(data["version"]),
        system=str(data["system"]),
        templates=dict(templates),
        hash=f"{data['name']}@{data['version']}:{digest}",
        extra=extra,
    )


@cache
def load_prompt(name: str) -> PromptTemplate:
    """Load the packaged prompt ``name`` (``rationale``, ``quality``...)."""
    try:
        text = resources.files("mmat.stages").joinpath("prompts", f"{name}.yaml").read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"unknown prompt {name!r}; packaged prompts: {', '.join(PROMPT_NAMES)}") from None
    return parse_prompt(text, origin=f"mmat/stages/prompts/{name}.yaml")


def prompt_hashes() -> dict[str, str]:
    """Every packaged prompt's hash, for provenance."""
    return {name: load_prompt(name).hash for name in PROMPT_NAMES}
