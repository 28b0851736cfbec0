"""Question templates: render options and append the style suffix chosen by the answer type.

The wording lives in ``templates.yaml`` (package data); code only picks a style key and fills it.

Example:
    >>> templates = QuestionTemplates.load("tabmwp")
    >>> templates.render("How much did she spend?", AnswerType.NUMBER, unit="$").suffix
    'Answer the question with a number; the unit is $.'
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from mmat.errors import ConfigError
from mmat.schema import AnswerType

_NUMBER = re.compile(r"^[-+]?[$€£¥]?\s?\d[\d,]*(\.\d+)?\s?%?$|^[-+]?\.\d+$")
_WORD = re.compile(r"^[^\W\d_][\w'-]*$")
_YES_NO = {"yes", "no"}
_LETTER = re.compile(r"^\(?([A-Z])\)?\.?$")


class Templated(NamedTuple):
    """The result of templating one question."""

    text: str
    suffix: str
    style: str


def infer_answer_type(
    answer: str, choices: list[str] | None = None, *, short_max_words: int = 10
) -> AnswerType:
    """Guess how a gold answer is phrased (it decides the style suffix, never the answer).

    Example:
        >>> infer_answer_type("Yes"), infer_answer_type("2,825.35"), infer_answer_type("couch")
        (<AnswerType.YES_NO: 'yes_no'>, <AnswerType.NUMBER: 'number'>, <AnswerType.SINGLE_WORD: 'single_word'>)
    """
    text = answer.strip()
    if choices and _LETTER.match(text) and len(choices) > ord(_LETTER.match(text).group(1)) - 65:  # type: ignore[union-attr]
        return AnswerType.OPTION_LETTER
    if text.lower() in _YES_NO:
        return AnswerType.YES_NO
    if _NUMBER.match(text):
        return AnswerType.NUMBER
    if _WORD.match(text):
        return AnswerType.SINGLE_WORD
    if len(text.split()) <= short_max_words:
        return AnswerType.SHORT_PHRASE
    return AnswerType.FREE_FORM


@cache
def _packaged() -> dict[str, Any]:
    text = resources.files("mmat.sources").joinpath("templates.yaml").read_text(encoding="utf-8")
    data: dict[str, Any] = yaml.safe_load(text)
    return data


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


_KNOWN_KEYS = {
    "version",
    "suffixes",
    "options",
    "joiner",
    "short_answer_max_words",
    "already_styled",
    "sources",
}


class QuestionTemplates:
    """The templates of one source: packaged defaults, then the source's overrides, then the user's.

    Args:
        data: the merged template data (shape of ``templates.yaml`` without ``sources``).
    """

    def __init__(self, data: dict[str, Any]) -> None:
        unknown = set(data) - _KNOWN_KEYS
        if unknown:
            raise ConfigError(
                f"unknown template keys {sorted(unknown)}; valid keys: {sorted(_KNOWN_KEYS - {'sources'})}"
            )
        self.suffixes: dict[str, str] = {k: str(v or "") for k, v in data["suffixes"].items()}
        missing = {t.value for t in AnswerType} - set(self.suffixes)
        if missing:
            raise ConfigError(f"templates lack suffixes for answer types {sorted(missing)}; add them")
        options = data["options"]
        self.options_header: str = options.get("header", "")
        self.option_line: str = options["line"]
        self.letters: str = options["letters"]
        self.joiner: str = data.get("joiner", "\n")
        self.short_answer_max_words = int(data.get("short_answer_max_words", 10))
        self.already_styled = [s.lower() for s in data.get("already_styled", [])]
        self._options_cache: dict[tuple[str, ...], str] = {}
        self._styled = (
            re.compile("|".join(re.escape(marker) for marker in self.already_styled))
            if self.already_styled
            else None
        )

    @classmethod
    def load(
        cls,
        source: str | None = None,
        *,
        file: str | Path | None = None,
        styles: dict[str, str] | None = None,
    ) -> QuestionTemplates:
        """Templates for ``source``: the packaged file, its ``sources.<source>`` part, ``file``, ``styles``."""
        packaged = _packaged()
        data = {k: v for k, v in packaged.items() if k != "sources"}
        if source:
            data = _merge(data, packaged.get("sources", {}).get(source, {}))
        if file is not None:
            try:
                user = yaml.safe_load(Path(file).read_text(encoding="utf-8")) or {}
            except (OSError, yaml.YAMLError) as error:
                raise ConfigError(f"cannot read the templates file {file}: {error}") from None
            data = _merge(data, {k: v for k, v in user.items() if k != "sources"})
            if source:
                data = _merge(data, user.get("sources", {}).get(source, {}))
        if styles:
            data = _merge(data, {"suffixes": styles})
        return cls(data)

    def render_options(self, choices: list[str]) -> str:
        """The options block, e.g. ``Options:\\nA. linear\\nB. nonlinear``."""
        key = tuple(choices)
        block = self._options_cache.get(key)
        if block is None:
            block = self._render_options(choices)
            if len(self._options_cache) < 4096:  # choice lists repeat a lot (yes/no, weekdays...)
                self._options_cache[key] = block
        return block

    def _render_options(self, choices: list[str]) -> str:
        if len(choices) > len(self.letters):
            raise ConfigError(
                f"{len(choices)} options but only {len(self.letters)} option letters in templates"
            )
        lines = [self.option_line.format(letter=self.letters[i], text=text) for i, text in enumerate(choices)]
        if self.options_header:
            lines.insert(0, self.options_header)
        return "\n".join(lines)

    def option_letter(self, answer: str, choices: list[str]) -> str | None:
        """The letter of the choice equal to ``answer``, if any."""
        try:
            return self.letters[choices.index(answer)]
        except (ValueError, IndexError):
            return None

    def style_key(self, answer_type: AnswerType, *, unit: str | None, answer_is_choice: bool) -> str:
        """Which suffix applies: the answer type, refined by unit and multiple choice."""
        if answer_type is AnswerType.NUMBER and unit:
            return "number_with_unit"
        if answer_is_choice and answer_type not in (AnswerType.OPTION_LETTER, AnswerType.YES_NO):
            return "option_text"
        return answer_type.value

    def render(
        self,
        question: str,
        answer_type: AnswerType,
        *,
        choices: list[str] | None = None,
        answer: str | None = None,
        unit: str | None = None,
    ) -> Templated:
        """Template one question. ``answer`` is only read to know whether it is one of ``choices``."""
        choices = choices or []
        answer_is_choice = bool(choices) and answer is not None and answer in choices
        style = self.style_key(answer_type, unit=unit, answer_is_choice=answer_is_choice)
        suffix = self.suffixes.get(style, "")
        if unit and "{unit}" in suffix:
            suffix = suffix.replace("{unit}", unit)
        if suffix and self._styled is not None and self._styled.search(question.lower()):
            # lower() + a case-sensitive alternation: an IGNORECASE regex was ~10x slower here
            suffix = ""
        text = question.strip()
        if choices:
            text = text + self.joiner + self.render_options(choices) if text else self.render_options(choices)
        if suffix:
            text = text + self.joiner + suffix if text else suffix
        return Templated(text, suffix, style)
