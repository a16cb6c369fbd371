"""The errors a user can cause or meet: one base class, one line each naming cause and fix.

Everything tars-opt raises on purpose derives from TarsOptError, so a front door (the CLI,
the gateway) handles them with one `except` and maps each kind to an exit code or status.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

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
