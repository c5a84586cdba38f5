"""``vane client install-encoder``: put a text encoder into a device's store.

From an artifact (``--file``, made by ``vane server export-encoder``) or a published version of an
encoder registry (``--registry DIR``: ``DIR/encoders.json``, written by ``vane server export-encoder
--registry DIR``; ``--version ID``, default the newest), checked against the registry's sha256. From
then on every titled event the store records is embedded once and sealed beside it;
``--embed-missing`` also embeds the events already stored (with a progress bar).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from vane.client.cli_options import JsonOpt, KeyOpt, PassOpt, StoreOpt
from vane.client.cli_views import json_text
from vane.client.files import store_files
from vane.shared.encoder_artifact import EncoderArtifact
from vane.shared.errors import ConfigError, ModelError

out = Console()


def registry_encoder(registry: Path, version: str | None) -> bytes:
    """The checked bytes of encoder ``version`` (default the newest) of the registry ``registry``."""
    index = registry / "encoders.json"
    try:
        entries = json.loads(index.read_text(encoding="utf-8"))
        ids = [str(e["id"]) for e in entries]
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise ConfigError(f"{str(index)!r} is not a readable encoder registry ({exc}); expected a folder given "
                          "to vane server export-encoder --registry") from None
    if not entries:
        raise ConfigError(f"encoder registry {str(registry)!r} holds no published version")
    chosen = entries[-1] if version is None else next((e for e in entries if e["id"] == version), None)
    if chosen is None:
        raise ConfigError(f"encoder registry {str(registry)!r} has no version {version!r}; it has {', '.join(ids)}")
    try:
        blob = Path(str(chosen["path"])).read_bytes()
    except OSError as exc:
        raise ModelError(f"encoder file {chosen['path']!r} of version {chosen['id']} cannot be read: "
                         f"{exc.strerror or exc}") from None
    found = hashlib.sha256(blob).hexdigest()
    if found != chosen.get("sha256"):
        raise ModelError(f"encoder file {chosen['path']!r} has sha256 {found}; the registry says "
                         f"{chosen.get('sha256')}")
    return blob


def install_encoder_command(
    store: StoreOpt,
    key_file: KeyOpt = None,
    passphrase_env: PassOpt = None,
    file: Annotated[Path | None, typer.Option("--file", help="An encoder artifact (vane server export-encoder).",
                                              dir_okay=False)] = None,
    registry: Annotated[Path | None, typer.Option("--registry", help="An encoder registry folder "
                                                  "(vane server export-encoder --registry DIR).", file_okay=False)]
    = None,
    version: Annotated[str | None, typer.Option("--version", help="Registry version id (default: the newest).")]
    = None,
    embed_missing: Annotated[bool, typer.Option("--embed-missing", help="Also embed the titled events already "
                                                "stored that have no embedding of this version.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Install a text encoder into this device's store: each titled event is then embedded once, sealed."""
    from vane.client.cli_client import _open, _remove_new_files

    if (file is None) == (registry is None):
        raise typer.BadParameter("give exactly one of --file and --registry", param_hint="--file/--registry")
    if version is not None and registry is None:
        raise typer.BadParameter("--version needs --registry", param_hint="--version")
    if registry is not None:
        blob = registry_encoder(registry, version)
    else:
        try:
            blob = Path(file or "").read_bytes()
        except OSError as exc:
            raise ModelError(f"encoder file {str(file)!r} cannot be read: {exc.strerror or exc}") from None
    EncoderArtifact.from_bytes(blob, f"encoder file {str(file or registry)!r}")  # checked before the store opens
    created = [p for p in store_files(store, key_file) if not p.exists()]
    try:
        with _open(store, key_file, passphrase_env, must_exist=False) as tracker:
            installed = tracker.install_encoder(blob)
            embedded = _embed_missing(tracker.store, as_json) if embed_missing else 0
            info: dict[str, Any] = {"store": str(store), "encoder_version": installed, "embedded_now": embedded,
                                    "embeddings": tracker.store.embedding_versions()}
    except BaseException:
        if store in created:
            _remove_new_files(created)
        raise
    if as_json:
        out.print(json_text(info), markup=False, highlight=False, soft_wrap=True)
        return
    out.print(f"installed encoder {installed} into {store}; {embedded} events embedded now; "
              f"stored embeddings by version: {info['embeddings'] or 'none'}", markup=False, highlight=False)


def _embed_missing(store: Any, quiet: bool) -> int:
    if quiet:
        return int(store.embed_missing())
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    with Progress(TextColumn("embedding events"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("ETA"), TimeRemainingColumn(), console=out, transient=True) as bar:
        task = bar.add_task("events", total=None)
        return int(store.embed_missing(progress=lambda done, total: bar.update(task, completed=done, total=total)))
