"""The API's error answers as the store interfaces' own errors, so callers handle one set either way."""

from __future__ import annotations

from cupola.client import ApiError
from cupola.errors import Conflict, CupolaError, Forbidden, InvalidInput, NotFound, Unauthorized

BY_STATUS: dict[int, type[CupolaError]] = {401: Unauthorized, 403: Forbidden, 404: NotFound, 409: Conflict}


def store_error(error: ApiError) -> CupolaError:
    """The error class a local store raises for the same failure; the server's message and field kept."""
    kind = BY_STATUS.get(error.status, InvalidInput if 400 <= error.status < 500 else None)
    return error if kind is None else kind(f"{error.message} (control plane: {error.status})", error.field)


def refused(operation: str, instead: str) -> InvalidInput:
    return InvalidInput(f"{operation} is not done over the control plane's API: {instead}")
