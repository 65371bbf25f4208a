"""One error model: every error cupola raises on purpose is a `CupolaError` carrying an HTTP status and
the field to fix, so the control-plane API and the Serve app map them once to one JSON shape
(`{"error": {"status", "message", "field"}}`) and the CLI prints them as one line. Anything else
that escapes is a bug: a 500 over HTTP, a traceback in the CLI.

The classes also derive from the built-in exception they refine (`NotFound` is a `KeyError`,
`InvalidInput` a `ValueError`, `Unavailable` a `ConnectionError`), so code and notebooks written
against the built-ins keep catching them. This module imports nothing of cupola's: every layer may
raise these.
"""

from __future__ import annotations

from typing import Any, ClassVar


class CupolaError(Exception):
    """An error with a message that says what to do, the HTTP status it means, and the field at fault."""

    status: ClassVar[int] = 500

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def __str__(self) -> str:  # KeyError would quote the message
        return self.message

    def __reduce__(self) -> tuple[Any, ...]:  # survives pickling across Ray tasks with its field
        return (type(self), (self.message, self.field))


class InvalidInput(CupolaError, ValueError):
    """The caller sent or declared something invalid (422): the message names the field and the fix."""

    status = 422


class PayloadTooLarge(InvalidInput):
    """A request larger than the configured limit (413)."""

    status = 413


class Unauthorized(CupolaError):
    """No valid token for an operation that needs one (401)."""

    status = 401


class Forbidden(CupolaError):
    """A valid token whose role may not do this, or an operation switched off by settings (403)."""

    status = 403


class NotFound(CupolaError, KeyError):
    """A named thing (model, version, alias, run, feature group) does not exist (404)."""

    status = 404


class Conflict(CupolaError):
    """The state changed since the caller read it (an alias moved, a deployment revised); nothing was written (409)."""

    status = 409


class Unavailable(CupolaError, ConnectionError):
    """A service cupola depends on (Ray, Cassandra, the control plane) did not answer (503)."""

    status = 503


class ServerFault(CupolaError, RuntimeError):
    """A known failure that is not the caller's: a corrupt artifact, writes that kept conflicting (500)."""

    status = 500


def problem_body(status: int, message: str, field: str | None = None, request_id: str | None = None) -> dict[str, Any]:
    """The one JSON body of an error answer, for the control plane and the Serve app alike (the control plane
    also answers framework refusals, a 404 route or a 422 query parameter, in it); the Serve app adds the
    request id it logged the refusal under."""
    body: dict[str, Any] = {"error": {"status": status, "message": message, "field": field}}
    if request_id is not None:
        body["request_id"] = request_id
    return body


def error_body(error: CupolaError, request_id: str | None = None) -> dict[str, Any]:
    """`problem_body` of a CupolaError."""
    return problem_body(error.status, error.message, error.field, request_id)
