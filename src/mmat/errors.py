"""The exceptions mmat raises.

Every message says what happened, what was expected and the fix. Only the CLI turns these into exit
codes; library code raises them and never calls ``sys.exit``.
"""

from __future__ import annotations


class MmatError(Exception):
    """Base class of every error mmat raises on purpose."""

    exit_code = 1


class ConfigError(MmatError):
    """A run configuration, CLI flag or environment variable is wrong."""

    exit_code = 2


class MissingDependencyError(MmatError):
    """An optional extra is not installed.

    Args:
        feature: what the user asked for (``"RapidOCR"``).
        extra: the pyproject extra that provides it (``"ocr"``).
    """

    exit_code = 3

    def __init__(self, feature: str, extra: str, cause: BaseException | None = None) -> None:
        detail = f" ({cause})" if cause else ""
        super().__init__(f"{feature} is not installed{detail}. Fix: pip install 'mmat[{extra}]'")
        self.feature = feature
        self.extra = extra


class UnknownPluginError(MmatError):
    """A registry was asked for a name it does not hold."""

    exit_code = 2


class WireFormatError(MmatError):
    """A string does not follow the MMAT RR/ORR wire format.

    Attributes:
        text: the offending text, shortened for messages.
    """

    def __init__(self, what: str, text: str) -> None:
        shown = text if len(text) <= 200 else text[:200] + "..."
        super().__init__(f"{what}. Got: {shown!r}")
        self.text = text


class RecordError(MmatError):
    """One input record is bad. It is written to the rejects file; the run goes on.

    Args:
        reason: a short machine-readable reason code (``"missing_field"``).
        detail: the human explanation with the fix.
        record_id: the record's id when known.
        location: ``file:line`` or ``file@offset`` when known.
    """

    def __init__(
        self, reason: str, detail: str, *, record_id: str | None = None, location: str | None = None
    ) -> None:
        where = " ".join(p for p in (f"record {record_id}" if record_id else "", location or "") if p)
        super().__init__(f"{where + ': ' if where else ''}{detail}")
        self.reason = reason
        self.detail = detail
        self.record_id = record_id
        self.location = location


class ImageError(RecordError):
    """An image is missing, undecodable, too large or outside its root."""


class SampleRejected(MmatError):
    """A stage gave up on a sample; the engine writes it to the rejects file with ``reason``."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class TeacherError(MmatError):
    """A teacher call failed after the engine's retries.

    Attributes:
        kind: the error class used for retry budgets (``"rate_limit"``, ``"server"``, ``"timeout"``,
            ``"malformed"``, ``"client"``).
        retry_after: seconds the server asked us to wait, when it said.
        status: the HTTP status behind the error, when there was one (503 tells overload apart).
    """

    def __init__(
        self, kind: str, message: str, *, retry_after: float | None = None, status: int | None = None
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.retry_after = retry_after
        self.status = status


class ToolError(MmatError):
    """An operator could not run; inside runs this becomes ``ToolResult.error``."""
