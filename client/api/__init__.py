"""``vane.client.api``: the local HTTP API of one store (``vane client serve``), for apps in any language.

A FastAPI app on uvicorn, bound to loopback, the single owner of the store while it runs:

- :mod:`~vane.client.api.tokens`: the per-store token file (``STORE.token``, 0600), the loopback rule for
  ``--host`` and the ``STORE.server.json`` sidecar that tells other commands where the server is;
- :mod:`~vane.client.api.guard`: the ASGI middleware in front of every request (Host and Origin checks,
  CORS for allowed origins, the Bearer token, the body-size limit);
- :mod:`~vane.client.api.app`: :func:`create_app`, the routes and the JSON errors;
- :mod:`~vane.client.api.views`: the answers' JSON shapes (interests by level, history, reasons).

This package imports FastAPI only when :func:`create_app` is used (the ``api`` extra), so the CLI and
the tokens helpers work without it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["DEFAULT_PORT", "create_app"]

#: The port ``vane client serve`` listens on unless told otherwise.
DEFAULT_PORT = 8741


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from vane.client.api.app import create_app

        return create_app
    raise AttributeError(f"module 'vane.client.api' has no attribute {name!r}")
