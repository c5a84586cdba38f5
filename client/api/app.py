""":func:`create_app`: the routes of the local API over one open tracker.

Every tracker call runs in a worker thread under one lock (the tracker is thread-safe; the lock keeps
each request's reads and writes together). Bodies are parsed here, not by pydantic, so that a bad
value gets the Python API's own message: ``{"error": {"type": "EventValidationError", "message":
"event field 'kind' is 'jump'; expected one of view, ..."}}`` with status 400. The OpenAPI schema is at
``/api/openapi.json`` (the interactive docs pages are off: they would load scripts from a CDN).
"""

from __future__ import annotations

import json
import mimetypes
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import anyio
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from vane.client.api import views
from vane.client.api.errors import NotFoundError, RequestError, error_body, status_of
from vane.client.api.guard import Guard
from vane.client.tracker import InterestTracker
from vane.shared.errors import VaneError
from vane.shared.events import Event

T = TypeVar("T")

#: The dashboard's static files (written by the dashboard's own engineer), served without a token.
DASHBOARD_DIR = Path(__file__).resolve().parent.parent / "dashboard"
DEFAULT_MAX_BODY = 1 << 20
_LEVEL_DOC = ("full: the topics as stored (/Sports/Basketball); top: the top-level topics (/Sports), each with "
              "the topics under it")
_EVENT_SCHEMA = {"type": "object", "required": ["item_id", "timestamp", "kind"], "properties": {
    "item_id": {"type": "string"}, "timestamp": {"type": ["string", "number"]}, "kind": {"type": "string"},
    "categories": {"type": "array", "items": {"type": "string"}}, "title": {"type": "string"},
    "dwell_s": {"type": "number"}, "url": {"type": "string"}, "transition": {"type": "string"}}}


def _body_doc(schema: dict[str, Any]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


async def json_body(request: Request) -> Any:
    """The request's JSON; :class:`RequestError` naming what is wrong with it."""
    raw = await request.body()
    if not raw.strip():
        raise RequestError("the request body is empty; expected a JSON object")
    try:
        return json.loads(raw)
    except UnicodeDecodeError:
        raise RequestError("the request body is not UTF-8 text; expected a JSON object") from None
    except json.JSONDecodeError as exc:
        raise RequestError(f"the request body is not valid JSON: {exc.msg} at line {exc.lineno} column "
                           f"{exc.colno}") from None


def _object(data: Any, allowed: Iterable[str], what: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise RequestError(f"{what} must be a JSON object, got {type(data).__name__}: {str(data)[:60]!r}")
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise RequestError(f"{what} has unknown field {unknown[0]!r}; expected some of {sorted(allowed)}")
    return data


def _int_field(data: dict[str, Any], name: str, default: int, low: int, high: int) -> int:
    value = data.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise RequestError(f"{name} is {value!r}; expected an integer from {low} to {high}")
    return value


def create_app(tracker: InterestTracker, token: str, origins: Iterable[str], *,
               max_body_bytes: int = DEFAULT_MAX_BODY, hosts: Iterable[str] | None = None,
               dashboard_dir: Path = DASHBOARD_DIR, vane_version: str = "unknown") -> FastAPI:
    """The API over ``tracker`` (open; the caller closes it), guarded by :class:`~vane.client.api.guard.Guard`.

    Parameters
    ----------
    tracker : InterestTracker
        The open tracker the server owns.
    token : str
        The Bearer token of every ``/api/`` request.
    origins : iterable of str
        The origins allowed to call: the server's own (``http://127.0.0.1:P``, ``http://localhost:P``) and
        the extension's (``chrome-extension://ID``).
    max_body_bytes : int, default 1 MiB
        Larger request bodies get 413.
    hosts : iterable of str, optional
        Accepted ``Host`` header values (None: any).
    dashboard_dir : Path
        Where ``/`` and ``/static/...`` are served from.
    """
    app = FastAPI(title="Vane local API", version=vane_version, docs_url=None, redoc_url=None,
                  openapi_url="/api/openapi.json")
    lock = threading.Lock()

    async def call(fn: Callable[[], T], quick: bool = False) -> T:
        """``fn()`` under the lock: a ``quick`` call (well under a millisecond, e.g. recording one event) runs
        on the event loop when the lock is free (a hop to a worker thread would cost more than the call);
        anything else in a worker thread, so a long call (an export) never stalls the loop."""
        if quick and lock.acquire(blocking=False):
            try:
                return fn()
            finally:
                lock.release()

        def locked() -> T:
            with lock:
                return fn()

        return await anyio.to_thread.run_sync(locked)

    @app.exception_handler(VaneError)
    async def vane_error(_: Request, exc: VaneError) -> JSONResponse:
        extra = {"index": exc.index} if isinstance(getattr(exc, "index", None), int) else {}
        return JSONResponse(error_body(type(exc).__name__, str(exc), **extra), status_code=status_of(exc))

    @app.exception_handler(RequestValidationError)
    async def bad_parameter(_: Request, exc: RequestValidationError) -> JSONResponse:
        problem = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in problem.get("loc", ())[1:]) or "request"
        message = f"{where} is {problem.get('input')!r}; {str(problem.get('msg', 'invalid')).lower()}"
        return JSONResponse(error_body("RequestError", message), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = "NotFoundError" if exc.status_code == 404 else "HTTPError"
        message = f"no such route: {request.method} {request.url.path}" if exc.status_code == 404 else str(exc.detail)
        return JSONResponse(error_body(kind, message), status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def internal_error(_: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(error_body("InternalError", f"{type(exc).__name__}: {exc}"), status_code=500)

    # ---- the dashboard's files (no token, no data) ----------------------------------------------
    def static_file(relative: str) -> FileResponse:
        root = dashboard_dir.resolve()
        target = (root / relative).resolve()
        if root not in target.parents or not target.is_file():
            raise NotFoundError(f"no such file: /static/{relative}" if relative != "index.html"
                                else "the dashboard is not installed (client/dashboard/index.html is missing)")
        kind = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        return FileResponse(target, media_type=kind, headers={"x-content-type-options": "nosniff",
                                                              "cache-control": "no-cache"})

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return static_file("index.html")

    @app.get("/static/{path:path}", include_in_schema=False)
    async def static(path: str) -> FileResponse:
        return static_file(path)

    # ---- the API ------------------------------------------------------------------------------------
    @app.get("/api/health")
    async def health() -> dict[str, Any]:
        """Whether the server answers, and how many events the store holds."""
        return {"ok": True, "events": await call(tracker.store.count, quick=True), "version": vane_version}

    batch_schema = {"type": "object", "required": ["events"],
                    "properties": {"events": {"type": "array", "items": _EVENT_SCHEMA}}}

    @app.post("/api/events", openapi_extra=_body_doc({"oneOf": [_EVENT_SCHEMA, batch_schema]}))
    async def record(request: Request) -> dict[str, int]:
        """Record one event, or a batch ``{"events": [...]}`` all-or-nothing; duplicates are dropped."""
        data = await json_body(request)
        rules = views.page_rules(tracker)
        if isinstance(data, dict) and set(data) == {"events"}:
            if not isinstance(data["events"], list):
                raise RequestError(f"events is {str(data['events'])[:60]!r}; expected a list of event objects")
            batch = []
            for i, item in enumerate(data["events"]):
                try:
                    batch.append(Event.from_dict(views.visit_event(item, rules)))
                except VaneError as exc:
                    exc.index = i
                    raise
            seqs = await call(lambda: tracker.record_many(views.fill_other(tracker, batch)))
            return {"recorded": len(seqs), "duplicates": len(batch) - len(seqs)}
        event = Event.from_dict(views.visit_event(data, rules))
        seq = await call(lambda: tracker.record(views.fill_other(tracker, [event])[0]), quick=True)
        return {"recorded": int(seq is not None), "duplicates": int(seq is None)}

    @app.get("/api/interests")
    async def interests(k: Annotated[int, Query(ge=1, le=1000)] = 10,
                        level: Annotated[str, Query(pattern="^(top|full)$")] = "full") -> dict[str, Any]:
        """What the person is into now, at the ``top`` or ``full`` topic level, with the events behind each."""
        return await call(lambda: views.interests_json(tracker, k, level))

    @app.get("/api/interests/history")
    async def history(buckets: Annotated[int, Query(ge=1, le=1000)] = 30,
                      level: Annotated[str, Query(pattern="^(top|full)$")] = "full") -> dict[str, Any]:
        """Interests over time: topic shares in equal spans of the stored history."""
        return await call(lambda: views.history_json(tracker, buckets, level))

    @app.get("/api/predict")
    async def predict(k: Annotated[int, Query(ge=1, le=1000)] = 5,
                      level: Annotated[str, Query(pattern="^(top|full)$", description=_LEVEL_DOC)] = "full",
                      ) -> dict[str, Any]:
        """What comes next, with the reasons, and the next-window intensity, at the ``top`` or ``full`` topic
        level (at ``top`` a top-level topic's chance is its topics' summed; its intensity is the chance that any
        of them appears)."""
        return await call(lambda: views.prediction_json(tracker, k, level))

    @app.get("/api/shifts")
    async def shifts(level: Annotated[str, Query(pattern="^(top|full)$", description=_LEVEL_DOC)] = "full",
                     ) -> dict[str, Any]:
        """Detected interest shifts, oldest first, at the ``top`` or ``full`` topic level (at ``top`` a change
        inside one top-level topic, ``/Sports/Basketball`` to ``/Sports/Soccer``, is not a shift)."""
        found = await call(lambda: tracker.shifts(level=level))
        return {"shifts": [s.to_dict() for s in found], "level": level}

    @app.post("/api/recommend", openapi_extra=_body_doc({"type": "object", "required": ["candidates"], "properties": {
        "candidates": {"type": "array", "items": {"type": "object"}}, "k": {"type": "integer"}}}))
    async def recommend(request: Request) -> dict[str, Any]:
        """Rank candidate items by predicted interest; candidates whose topics are all blocked are dropped."""
        data = _object(await json_body(request), ("candidates", "k"), "the body")
        k = _int_field(data, "k", 10, 1, 10_000)
        candidates = data.get("candidates")
        if not isinstance(candidates, list):
            raise RequestError(f"candidates is {candidates!r}; expected a list of {{item_id, categories, title}}")
        found = await call(lambda: tracker.recommend(candidates, k))
        return {"recommendations": [r.to_dict() for r in found]}

    @app.get("/api/events")
    async def events(topic: Annotated[str | None, Query(min_length=1, max_length=128)] = None,
                     limit: Annotated[int, Query(ge=1, le=10_000)] = 50) -> dict[str, Any]:
        """The stored events behind a topic (all events without one), newest first."""
        return await call(lambda: views.events_json(tracker, topic, limit))

    @app.post("/api/forget", openapi_extra=_body_doc({"type": "object", "properties": {
        "item_id": {"type": "string"}, "before": {}, "after": {}, "topic": {"type": "string"},
        "everything": {"type": "boolean"}}}))
    async def forget(request: Request) -> dict[str, int]:
        """Delete events for good: by item, before a time, in a time range, by topic, or everything."""
        data = _object(await json_body(request), ("item_id", "before", "after", "topic", "everything"), "the body")
        return {"forgotten": await call(_forgetting(tracker, data))}

    @app.get("/api/export")
    async def export() -> dict[str, Any]:
        """The person's own data: events, interests, prediction, shifts."""
        return await call(lambda: tracker.export())

    @app.post("/api/categorize", openapi_extra=_body_doc({"type": "object", "properties": {
        "title": {"type": "string"}, "url": {"type": "string"}}}))
    async def categorize(request: Request) -> dict[str, Any]:
        """The topics of a page from its title and URL, each with its source and confidence."""
        data = _object(await json_body(request), ("title", "url"), "the body")
        for name in ("title", "url"):
            if data.get(name) is not None and not isinstance(data[name], str):
                raise RequestError(f"{name} is {data[name]!r}; expected a string")
        if not data.get("title") and not data.get("url"):
            raise RequestError("say what to categorize: a title, a url or both")
        return {"topics": await call(lambda: views.categorize(tracker, data.get("title"), data.get("url")))}

    @app.get("/api/blocks")
    async def blocks() -> dict[str, list[str]]:
        """The blocked topics."""
        return {"blocked": sorted(await call(tracker.blocked))}

    @app.post("/api/blocks", openapi_extra=_body_doc({"type": "object", "required": ["topic"], "properties": {
        "topic": {"type": "string"}}}))
    async def block(request: Request) -> dict[str, Any]:
        """Block a topic: never predicted, recommended or trained on again (its events stay until forgotten)."""
        data = _object(await json_body(request), ("topic",), "the body")
        added = await call(lambda: tracker.block(data.get("topic")))
        return {"blocked": sorted(await call(tracker.blocked)), "added": added}

    @app.delete("/api/blocks/{topic:path}")
    async def unblock(topic: str) -> dict[str, Any]:
        """Unblock a topic (404 when it is not blocked)."""
        if not await call(lambda: tracker.unblock(topic)):
            raise NotFoundError(f"topic {topic!r} is not blocked")
        return {"blocked": sorted(await call(tracker.blocked))}

    @app.get("/api/versions")
    async def versions() -> dict[str, Any]:
        """The installed model and encoder versions, and Vane's."""
        return await call(lambda: views.versions_json(tracker, vane_version))

    app.add_middleware(Guard, token=token, origins=origins, max_body_bytes=max_body_bytes, hosts=hosts)
    return app


def _forgetting(tracker: InterestTracker, data: dict[str, Any]) -> Callable[[], int]:
    """The tracker call one forget body asks for (checked before anything is deleted)."""
    given = sorted(k for k, v in data.items() if v is not None)
    if given == ["item_id"]:
        item = data["item_id"]
        if not isinstance(item, str) or not item:
            raise RequestError(f"item_id is {item!r}; expected a non-empty string")
        return lambda: tracker.forget(item_id=item)
    if given == ["topic"]:
        return lambda: tracker.forget_topic(data["topic"])
    if given == ["everything"]:
        if data["everything"] is not True:
            raise RequestError(f"everything is {data['everything']!r}; expected true")
        return lambda: tracker.forget(everything=True)
    if given == ["before"]:
        before = views.parse_time(data["before"], "before")
        return lambda: tracker.forget(before=before)
    if given in (["after"], ["after", "before"]):
        after = views.parse_time(data["after"], "after")
        until = views.parse_time(data["before"], "before") if "before" in given else None
        return lambda: tracker.forget_range(after, until)
    raise RequestError(f"say what to forget with one of {{item_id}}, {{before}}, {{after, before}}, {{after}}, "
                       f"{{topic}}, {{everything: true}}; got the fields {given}")
