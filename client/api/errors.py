"""The API's own errors and the status code of every :class:`~vane.shared.errors.VaneError`.

Every error answer is ``{"error": {"type": class name, "message": text}}``; the message is the one
the Python API raises, so an app in another language reads the same sentence.
"""

from __future__ import annotations

from typing import Any

from vane.shared.errors import (
    ModelError,
    StoreError,
    StoreInUseError,
    VaneError,
)


class RequestError(VaneError, ValueError):
    """A request body or parameter is not what the endpoint expects (400)."""


class NotFoundError(VaneError, LookupError):
    """An unknown route, item or topic (404)."""


def status_of(exc: BaseException) -> int:
    """The HTTP status for ``exc``: 404 unknown, 409 store in use, 500 a broken store or model, else 400."""
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, StoreInUseError):
        return 409
    if isinstance(exc, (StoreError, ModelError)):  # a damaged store or model: not the request's fault
        return 500
    if isinstance(exc, VaneError):
        return 400
    return 500


def error_body(kind: str, message: str, **extra: Any) -> dict[str, Any]:
    """The JSON body of an error answer."""
    return {"error": {"type": kind, "message": message, **extra}}
