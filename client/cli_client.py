"""``vane client …``: commands for a person inspecting their own device.

Every command takes ``--store`` (the encrypted store file) and a key source:
``--key-file`` (default: the store path with ``.key`` appended) or the
passphrase in the environment variable named by ``--passphrase-env``.
Each has a ``--json`` form for scripts.
"""

from __future__ import annotations

import contextlib
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from vane.client.api.tokens import with_server_hint
from vane.client.cli_options import JsonOpt, KeyOpt, PassOpt, StoreOpt
from vane.client.cli_views import cell, import_table, json_text, profile_views, score_meaning
from vane.client.files import check_destination, store_files
from vane.shared.errors import StoreInUseError
from vane.shared.events import OTHER

client_app = typer.Typer(no_args_is_help=True)
out = Console()


def _open(store: Path, key_file: Path | None, passphrase_env: str | None, must_exist: bool = True) -> Any:
    from vane.client.tracker import InterestTracker

    if must_exist and not store.exists():
        raise typer.BadParameter(f"store {str(store)!r} does not exist", param_hint="--store")
    try:
        if passphrase_env is not None:
            passphrase = os.environ.get(passphrase_env)
            if not passphrase:
                raise typer.BadParameter(f"environment variable {passphrase_env!r} is unset or empty",
                                         param_hint="--passphrase-env")
            return InterestTracker.open(store, passphrase=passphrase)
        return InterestTracker.open(store, key_file=key_file or store.with_name(store.name + ".key"))
    except StoreInUseError as exc:  # say where the API is when `vane client serve` holds the store
        raise with_server_hint(exc, store) from None


def _remove_new_files(paths: list[Path]) -> None:
    """Remove the store, sidecars and key file that a failed first import created (and nothing else)."""
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _print_json(data: Any) -> None:
    print(json_text(data))


def _iso(unix: float | None) -> str | None:
    return None if unix is None else datetime.fromtimestamp(unix, UTC).isoformat()


def profile_page(tracker: Any, top: int, because: int = 0, level: str = "full") -> dict[str, Any]:
    """The ``--json`` page of ``vane client profile`` (``"format": 2``), which the tables are drawn from.

    ``interests``, ``prediction`` and ``shifts`` are the tracker's answers as before (``interests`` may
    hold ``other``, the uncategorised events), at ``level`` (``"full"``, the topics as stored, or ``"top"``:
    see :mod:`vane.client.levels`), which ``level`` names. Format 2 adds ``summary`` (``events_seen``,
    ``uncategorised_events``, ``first_event``/``newest_event`` as ISO-8601 UTC, ``newest_event_age_days``,
    ``score_meaning``: what ``score`` means), ``shown`` (the interests listed: ``other`` left out, each
    with its ``events`` count) and, with ``because`` > 0, ``because``: the newest ``because`` events
    behind each shown interest, full titles, newest first. At the ``top`` level an interest's ``events`` and
    ``because`` are the events with any unblocked topic under it, each counted once.
    """
    from vane.client.blocks import is_blocked
    from vane.client.levels import at_level
    from vane.client.tracker_state import time_ordered
    from vane.shared import events as shared_events

    wide = tracker.interests(top + 1, level=level)  # one spare: ``other`` is not listed as an interest
    prediction, shifts = tracker.predict(top, level=level), tracker.shifts(level=level)
    personal = tracker.personal_state
    interests = wide.to_dict()
    interests["top"] = interests["top"][:top]
    profile, newest = personal.profile, personal.last_time
    blocked = tracker.blocked()

    def topics_of(categories: tuple[str, ...]) -> dict[str, None]:
        """An event's topics at ``level``, each once (blocked ones left out at the top level, as in the roll-up)."""
        return dict.fromkeys(at_level(c, level) for c in categories if level == "full" or not is_blocked(c, blocked))

    counts: dict[str, int] = dict(profile.counts)
    if level != "full":  # an event with two topics under one top-level topic counts once for it
        counts = {}
        for _, ev in tracker.store.events():
            for name in topics_of(ev.categories):
                counts[name] = counts.get(name, 0) + 1
    shown = [dict(c, events=counts.get(c["category"], 0))
             for c in wide.to_dict()["top"] if c["category"] != OTHER][:top]
    page: dict[str, Any] = {
        "format": 2, "level": level, "interests": interests, "prediction": prediction.to_dict(),
        "shifts": [s.to_dict() for s in shifts], "shown": shown,
        "summary": {
            "events_seen": profile.count, "uncategorised_events": profile.counts.get(OTHER, 0),
            "first_event": _iso(profile.first_time), "newest_event": _iso(newest),
            "newest_event_age_days": None if newest is None else (shared_events.clock() - newest) / 86400.0,
            "score_meaning": score_meaning(personal.detector.long_half_life, wide.source != "profile"),
        },
    }
    if because > 0:
        behind: dict[str, list[dict[str, Any]]] = {c["category"]: [] for c in shown}
        for _, ev in reversed(time_ordered(tracker.store)):
            for cat in topics_of(ev.categories):
                if cat in behind and len(behind[cat]) < because:
                    behind[cat].append({"timestamp": ev.timestamp.isoformat(), "title": ev.title,
                                        "item_id": ev.item_id})
        page["because"] = behind
    return page


@client_app.command()
def profile(store: StoreOpt, key_file: KeyOpt = None, passphrase_env: PassOpt = None, as_json: JsonOpt = False,
            top: Annotated[int, typer.Option(min=1, max=100, help="How many interests.")] = 5,
            because: Annotated[int, typer.Option(min=0, max=1000, help="Show the newest N events behind each "
                                                 "interest, with full titles.")] = 0,
            level: Annotated[str, typer.Option(help="full: the topics as stored (/Sports/Basketball); top: the "
                                               "top-level topics (/Sports), each with the topics under it. "
                                               "Applies to interests, predictions and shifts.")] = "full") -> None:
    """Show your interests now (one score, explained), what comes next and the detected shifts.

    --json prints the same page as JSON, "format": 2 (see vane.client.cli_client.profile_page).
    """
    if level not in ("full", "top"):
        raise typer.BadParameter(f"level is {level!r}; expected 'full' (the topics as stored) or 'top' "
                                 "(the top-level topics)", param_hint="--level")
    with _open(store, key_file, passphrase_env) as tracker:
        page = profile_page(tracker, top, because, level)
    if as_json:
        _print_json(page)
        return
    for view in profile_views(page, str(store)):
        out.print(view)


@client_app.command()
def forget(
    store: StoreOpt,
    key_file: KeyOpt = None,
    passphrase_env: PassOpt = None,
    item: Annotated[str | None, typer.Option("--item", help="Forget every event of this item id.")] = None,
    before: Annotated[datetime | None, typer.Option("--before", help="Forget events before this time (UTC).")]
    = None,
    everything: Annotated[bool, typer.Option("--everything", help="Forget all events.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Delete events for good (secure delete), and rebuild the profile without them."""
    if item is None and before is None and not everything:
        raise typer.BadParameter("say what to forget: --item ID, --before TIME or --everything")
    if before is not None and before.tzinfo is None:
        before = before.replace(tzinfo=UTC)
    with _open(store, key_file, passphrase_env) as tracker:
        removed = tracker.forget(item_id=item, before=before, everything=everything)
    if as_json:
        _print_json({"removed": removed})
    else:
        out.print(cell(f"Forgot {removed} event(s)."))


@client_app.command()
def export(
    store: StoreOpt,
    key_file: KeyOpt = None,
    passphrase_env: PassOpt = None,
    output: Annotated[Path | None, typer.Option("--out", "-o", help="Write here (mode 0600) instead of stdout.")]
    = None,
) -> None:
    """Export your own data (events, profile, predictions, shifts) as JSON."""
    if output is not None:
        # Refuse the store, its sidecars and its key before opening anything; the tracker checks again.
        check_destination(output, store_files(store, key_file))
    with _open(store, key_file, passphrase_env) as tracker:
        data = tracker.export(output)
    if output is None:
        _print_json(data)
    else:
        out.print(cell(f"Wrote {len(data.get('events', []))} events to {output}"))


@client_app.command("import-history")
def import_history(
    path: Annotated[Path, typer.Argument(help="A browser history file: Chrome History, Firefox places.sqlite or "
                                              "Safari History.db.", exists=True, dir_okay=False)],
    store: StoreOpt,
    key_file: KeyOpt = None,
    passphrase_env: PassOpt = None,
    browser: Annotated[str, typer.Option(help="auto, chrome, firefox or safari.")] = "auto",
    rules: Annotated[Path | None, typer.Option(help="Your own category rules (JSON), merged over the defaults.")]
    = None,
    as_json: JsonOpt = False,
) -> None:
    """Import browser history into the encrypted store; the original file is never modified."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    created = [p for p in store_files(store, key_file) if not p.exists()]
    try:
        with _open(store, key_file, passphrase_env, must_exist=False) as tracker:
            if as_json:
                summary = tracker.import_history(path, browser=browser, rules=rules)
            else:
                with Progress(TextColumn("reading visits"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                              TextColumn("ETA"), TimeRemainingColumn(), console=out, transient=True) as bar:
                    task = bar.add_task("visits", total=None)
                    summary = tracker.import_history(
                        path, browser=browser, rules=rules,
                        progress=lambda done, total: bar.update(task, completed=done, total=total),
                    )
    except BaseException:
        if store in created:
            _remove_new_files(created)
        raise
    data = summary.to_dict()
    if as_json:
        _print_json(data)
        return
    out.print(import_table(path.name, data))


# `vane client model` and `vane client install-model` live in cli_model.
from vane.client.cli_model import install_model_command, model_command  # noqa: E402

client_app.command("model")(model_command)
client_app.command("install-model")(install_model_command)

# `vane client install-encoder` lives in cli_encoder.
from vane.client.cli_encoder import install_encoder_command  # noqa: E402

client_app.command("install-encoder")(install_encoder_command)

# `vane client extension` lives in cli_extension.
from vane.client.cli_extension import extension_command  # noqa: E402

client_app.command("extension")(extension_command)

# `vane client serve` and `vane client token` live in cli_serve.
from vane.client.cli_serve import serve_command, token_command  # noqa: E402

client_app.command("serve")(serve_command)
client_app.command("token")(token_command)

# `vane client categorize` and `vane client correct` live in cli_categorize.
from vane.client.cli_categorize import categorize_command, correct_command  # noqa: E402

client_app.command("categorize")(categorize_command)
client_app.command("correct")(correct_command)
