"""``vane client categorize`` (the Topics of a title and URL) and ``vane client correct`` (a person's correction).

``categorize`` works without a store (the curated rules; with ``--encoder`` also the zero-shot
prior); with ``--store`` it also uses that store's corrections and trained head. ``--batch FILE``
reads JSON lines (``{"title": ..., "url": ...}``) and writes one result per line, in order; every
line is checked before anything is printed, and a bad one is named by its number.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from vane.client.categorize import Categorization, Categorizer
from vane.client.cli_options import JsonOpt, KeyOpt, PassOpt
from vane.client.cli_views import json_text
from vane.shared.errors import ConfigError

out = Console()

#: Titles and URLs categorised per encoder batch in ``--batch`` mode.
CHUNK = 256

OptStore = Annotated[Path | None, typer.Option("--store", dir_okay=False, help="Use this store's corrections and "
                                               "trained head (needs its key, see --key-file/--passphrase-env).")]
EncoderOpt = Annotated[Path | None, typer.Option("--encoder", exists=True, dir_okay=False, help="An encoder "
                                                 "artifact (vane server export-encoder): enables the classifier "
                                                 "head and the zero-shot prior. Without it: rules only.")]


def _read_batch(path: Path) -> list[tuple[str | None, str | None]]:
    """(title, url) per line of a JSON-lines file; a bad line raises ConfigError naming its number."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"batch file {path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    items: list[tuple[str | None, str | None]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        where = f"batch file {path} line {number}"
        try:
            row = json.loads(line)
        except ValueError:
            shown = line if len(line) <= 60 else line[:57] + "..."
            raise ConfigError(f"{where} is {shown!r}; expected a JSON object such as "
                              '{"title": "...", "url": "https://..."}') from None
        if not isinstance(row, dict):
            raise ConfigError(f"{where} is {type(row).__name__} JSON; expected an object with 'title' and 'url'")
        title, url = row.get("title"), row.get("url")
        for name, value in (("title", title), ("url", url)):
            if value is not None and not isinstance(value, str):
                raise ConfigError(f"{where}: '{name}' is {value!r}; expected a string or null")
        if not (title or "").strip() and not (url or "").strip():
            raise ConfigError(f"{where} has neither a 'title' nor a 'url'; expected at least one")
        items.append((title, url))
    return items


def _categorizer(store: Path | None, key_file: Path | None, passphrase_env: str | None,
                 encoder_path: Path | None) -> tuple[Categorizer, Any]:
    """The categoriser for the options, and the open tracker to close after (or None)."""
    encoder = None
    if encoder_path is not None:
        from vane.client.encoder import TextEncoder

        encoder = TextEncoder.from_path(encoder_path)
    if store is None:
        return Categorizer(encoder=encoder), None
    from vane.client.categorize_store import load_categorizer
    from vane.client.cli_client import _open

    tracker = _open(store, key_file, passphrase_env)
    try:
        return load_categorizer(tracker.store, encoder), tracker
    except BaseException:
        tracker.close()
        raise


def _line(result: Categorization) -> str:
    shown = ", ".join(f"{a.topic} ({a.source} {a.confidence:.2f})" for a in result.assignments)
    return f"{result.title or result.url}: {shown}"


def categorize_command(
    title: Annotated[str | None, typer.Argument(help="The page title to categorise (omit with --batch).")] = None,
    url: Annotated[str | None, typer.Option("--url", help="The page's URL (its host and path rules, its words).")]
    = None,
    batch: Annotated[Path | None, typer.Option("--batch", exists=True, dir_okay=False,
                                               help="A JSON-lines file of {\"title\", \"url\"} objects; one result "
                                                    "per line, in order.")] = None,
    store: OptStore = None,
    key_file: KeyOpt = None,
    passphrase_env: PassOpt = None,
    encoder: EncoderOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show the Topics (full paths) a title and URL get, with each one's source and confidence."""
    if (batch is None) == (title is None and url is None):
        raise typer.BadParameter("give either a TITLE (and/or --url) or --batch FILE", param_hint="TITLE")
    items = _read_batch(batch) if batch is not None else [(title, url)]
    categorizer, tracker = _categorizer(store, key_file, passphrase_env, encoder)
    try:
        if batch is not None:
            for start in range(0, len(items), CHUNK):
                for result in categorizer.categorize_many(items[start : start + CHUNK]):
                    print(json.dumps(result.to_dict(), ensure_ascii=False) if as_json else _line(result), flush=True)
            return
        (result,) = categorizer.categorize_many(items)
    finally:
        if tracker is not None:
            tracker.close()
    if as_json:
        print(json_text(result.to_dict()))
        return
    table = Table(title=f"Topics of {result.title or result.url}")
    for column in ("topic", "source", "confidence"):
        table.add_column(column)
    for a in result.assignments:
        table.add_row(a.topic, a.source, f"{a.confidence:.2f}")
    out.print(table)


def correct_command(
    event: Annotated[str, typer.Argument(help="The event to correct: its seq number in the store, or its item "
                                              "id / URL.")],
    topics: Annotated[list[str], typer.Argument(help="Its topics: full paths such as /Sports/Basketball, or ids.")],
    store: Annotated[Path, typer.Option("--store", help="The encrypted store file.", dir_okay=False)],
    key_file: KeyOpt = None,
    passphrase_env: PassOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Correct an event's topics; the correction is kept sealed, beats every other source and becomes a label."""
    from vane.client.categorize_store import correct
    from vane.client.cli_client import _open

    target: int | str = int(event) if event.isdigit() else event
    with _open(store, key_file, passphrase_env) as tracker:
        kept = correct(tracker.store, target, [int(t) if t.isdigit() else t for t in topics])
    if as_json:
        print(json_text(kept.to_dict()))
        return
    out.print(f"{kept.key}: {', '.join(kept.topics)} (correction kept in {os.fspath(store)})")
