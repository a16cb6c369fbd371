"""The errors a user can cause or meet: one base class, one line each naming cause and fix.

Everything tars-opt raises on purpose derives from TarsOptError, so a front door (the CLI,
the gateway) handles them with one `except` and maps each kind to an exit code or status.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tars_opt.monitor.baseline import CaptureProblem


class TarsOptError(Exception):
    """Base of every error tars-opt raises on purpose; the message is one line."""


class InputError(TarsOptError):
    """Bad input from the user; the message names the problem and the fix in one line."""


class TraceError(InputError):
    """A trace line that does not follow the schema; the message names line and field."""


class QueueError(InputError):
    """A queue command cannot be done (unknown ticket, wrong state); one line says why."""


class BatchRequestError(InputError):
    """A Message Batches call refused as the API would refuse it; `status` and `kind`
    (the API's error type) say how a front door answers it."""

    def __init__(
        self, message: str, *, status: int = 400, kind: str = "invalid_request_error"
    ) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind


class BaselineRefused(InputError):
    """`baseline capture` would store a period that is no baseline; `problems` say why."""

    def __init__(self, message: str, problems: list[CaptureProblem]) -> None:
        super().__init__(message)
        self.problems = problems


class ConfigError(TarsOptError):
    """A config problem, worded as one line that names the key and the fix."""


class DatabaseError(TarsOptError):
    """The database cannot be used; the message says why and what to do."""


class DatabaseUnreachable(DatabaseError):
    """The database server cannot be reached right now (down, network, timeout)."""


class BackendError(TarsOptError):
    """A call failed after the backend's own retries.

    `kind` is the API's error type (rate_limit_error, overloaded_error, api_error,
    timeout, connection_error, invalid_request_error, authentication_error, ...).
    """

    def __init__(self, message: str, *, kind: str = "api_error", status: int | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.status = status


class UpstreamFailure(BackendError):
    """The API answered the in-process client's call with an error status: `status`,
    `headers` and `body` go back to the caller's SDK as they came."""

    def __init__(
        self,
        message: str,
        *,
        kind: str = "api_error",
        status: int = 500,
        headers: Any = None,
        body: bytes = b"",
    ) -> None:
        super().__init__(message, kind=kind, status=status)
        self.headers = headers
        self.body = body


class UpstreamBroken(BackendError):
    """The in-process client's connection to the API failed; `cause` is the transport's own
    exception, re-raised to the caller's SDK (APIConnectionError / APITimeoutError)."""

    def __init__(
        self, message: str, *, cause: Exception | None = None, kind: str = "connection_error"
    ) -> None:
        super().__init__(message, kind=kind)
        self.cause = cause


class StreamCancelled(BackendError):
    """The caller stopped reading a stream: the upstream request was closed."""

    def __init__(self, message: str = "the caller closed the stream before it ended") -> None:
        super().__init__(message, kind="cancelled")


class MissingApiKey(TarsOptError):
    """No API key in the environment; the message says how to set one or go offline."""


class UnknownModelPrice(TarsOptError):
    """A model has no price in the config; costing it at $0 would lie."""


class BudgetExceeded(TarsOptError):
    """A blocking budget refused a non-urgent request; the message says what to do."""


class ReportError(TarsOptError):
    """The report cannot be made as asked; the message says why and what to do."""


class FeedbackError(TarsOptError):
    """Feedback that cannot be recorded (unknown request, bad verdict)."""


class EmbeddingUnavailable(TarsOptError):
    """The embedding model cannot be used; the message names the problem and the fix."""


class LearnedUnavailable(TarsOptError):
    """The learned router cannot run (no embedding model, missing or bad file)."""


class Refusal(TarsOptError):
    """A request the gateway answers itself with an error in the API's shape (too large,
    a refused budget, a bad control header...): `status` is the HTTP status it gets."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers or {}
