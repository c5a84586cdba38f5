"""What every HTTP request passes before a route sees it: one pure ASGI middleware, :class:`Guard`.

In order:

1. **Host.** When the server is bound to loopback, the ``Host`` header must name it
   (``127.0.0.1:P``, ``localhost:P``, ``[::1]:P``): a page on another site whose name was made to
   resolve to 127.0.0.1 (DNS rebinding) is refused with 403.
2. **Origin.** A request carrying ``Origin`` is served only for the server's own origin and the
   configured extension origins; any other (``http://evil.example``, ``null``) gets 403. Answers to
   allowed origins carry ``Access-Control-Allow-Origin: <that origin>`` (never ``*``), and a CORS
   preflight (``OPTIONS`` with ``Access-Control-Request-Method``) from one is answered 204 with the
   methods GET/POST/DELETE and the headers Authorization and Content-Type.
3. **Token.** Every ``/api/...`` request needs ``Authorization: Bearer <token>``, compared in constant
   time; otherwise 401. The dashboard's static files need none (they hold no data). No cookies are
   read or set, so there is no CSRF surface.
4. **Body size.** A ``Content-Length`` over the limit gets 413 before the body is read; a body sent
   without one (chunked) is counted as it streams and stopped with 413 when it passes the limit.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from vane.client.api.errors import error_body

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

ALLOW_METHODS = "GET, POST, DELETE"
ALLOW_HEADERS = "Authorization, Content-Type"


class BodyTooLargeError(Exception):
    """Raised inside ``receive`` when a streamed body passes the limit."""


async def send_json(send: Send, status: int, body: dict[str, Any], headers: Iterable[tuple[bytes, bytes]] = ()
                    ) -> None:
    """Send one whole JSON answer."""
    data = json.dumps(body, ensure_ascii=False).encode("utf-8")
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
                            (b"cache-control", b"no-store"), *headers]})
    await send({"type": "http.response.body", "body": data})


class Guard:
    """The checks of the module docstring in front of ``app``.

    Parameters
    ----------
    app : ASGI app
        What an accepted request goes on to.
    token : str
        The Bearer token every ``/api/`` request must carry.
    origins : iterable of str
        Origins allowed to call (the server's own and the extension's), exactly as browsers send them.
    max_body_bytes : int
        The largest request body accepted.
    hosts : iterable of str, optional
        ``Host`` header values accepted (lower case); None accepts any (a non-loopback bind).
    """

    def __init__(self, app: ASGIApp, token: str, origins: Iterable[str], max_body_bytes: int,
                 hosts: Iterable[str] | None = None) -> None:
        self.app = app
        self._token = token.encode("ascii")
        self.origins = frozenset(origins)
        self.max_body_bytes = max_body_bytes
        self.hosts = None if hosts is None else frozenset(h.lower() for h in hosts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":  # the API has none: refused before any check could be skipped
            await send({"type": "websocket.close", "code": 1008})
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers: dict[bytes, bytes] = {}
        for name, value in scope["headers"]:
            headers.setdefault(name.lower(), value)
        host = headers.get(b"host", b"").decode("latin-1").lower()
        if self.hosts is not None and host not in self.hosts:
            await send_json(send, 403, error_body("HostNotAllowed", f"Host {host!r} is not this server's; "
                                                  f"use one of {sorted(self.hosts)}"))
            return
        origin = headers[b"origin"].decode("latin-1") if b"origin" in headers else None
        if origin is not None and origin not in self.origins:
            await send_json(send, 403, error_body("OriginNotAllowed", f"origin {origin!r} may not call this server; "
                                                  "allowed: this server's own pages and the configured extension "
                                                  "origins (vane client serve --extension-origin)"))
            return
        cors = [] if origin is None else [(b"access-control-allow-origin", origin.encode("latin-1")),
                                          (b"vary", b"Origin")]
        method = scope["method"]
        if method == "OPTIONS" and origin is not None and b"access-control-request-method" in headers:
            await send({"type": "http.response.start", "status": 204, "headers": [
                *cors, (b"access-control-allow-methods", ALLOW_METHODS.encode()),
                (b"access-control-allow-headers", ALLOW_HEADERS.encode()), (b"access-control-max-age", b"600")]})
            await send({"type": "http.response.body", "body": b""})
            return
        path: str = scope["path"]
        if (path == "/api" or path.startswith("/api/")) and not self._authorized(headers.get(b"authorization")):
            await send_json(send, 401, error_body("Unauthorized", "missing or wrong token: send the header "
                                                  "'Authorization: Bearer <token>' (vane client token --store S "
                                                  "prints it)"), [*cors, (b"www-authenticate", b"Bearer")])
            return
        length = headers.get(b"content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                declared = -1
            if declared < 0:
                await send_json(send, 400, error_body("RequestError", f"Content-Length {length.decode('latin-1')!r} "
                                                      "is not a number of bytes"), cors)
                return
            if declared > self.max_body_bytes:
                await self._too_large(send, cors)
                return
        await self._serve(scope, receive, send, cors)

    def _authorized(self, value: bytes | None) -> bool:
        if value is None:
            return False
        scheme, _, given = value.partition(b" ")
        return scheme.lower() == b"bearer" and hmac.compare_digest(given.strip(), self._token)

    async def _too_large(self, send: Send, cors: list[tuple[bytes, bytes]]) -> None:
        await send_json(send, 413, error_body("RequestTooLarge", f"request body is over the limit of "
                                              f"{self.max_body_bytes} bytes (vane client serve --max-body-bytes)"),
                        [*cors, (b"connection", b"close")])

    async def _serve(self, scope: Scope, receive: Receive, send: Send, cors: list[tuple[bytes, bytes]]) -> None:
        seen = 0
        started = False

        async def counted_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body_bytes:
                    raise BodyTooLargeError
            return message

        async def send_with_cors(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if cors:
                    message["headers"] = [*message.get("headers", []), *cors]
            await send(message)

        try:
            await self.app(scope, counted_receive, send_with_cors)
        except BodyTooLargeError:
            if started:
                raise
            await self._too_large(send, cors)
