"""``vane client model`` and ``vane client install-model``: which model this device answers with, and
installing one by hand.

``install-model`` takes a model artifact (``vane server export-model``, :mod:`vane.shared.artifact`)
with ``--file``, or a published version of a federated run's model registry with ``--registry DIR``
(``--version ID``, default the newest): the registry entry names its checkpoint directory, whose
``model.tflite``, ``spec.json``, ``taxonomy.json`` and ``weights.vw`` make the artifact. A model for
another taxonomy than the one the store keeps, or one under which most of the stored events would
become ``other``, is refused (TaxonomyError naming the hashes) and nothing changes. So is a model that
reads text (``text_dim``) unless the device's encoder (``vane client install-encoder``) is the version
it was trained against (the registry entry's ``encoder_version``; ModelError naming both versions). The
store must not be open elsewhere (StoreInUseError names the owner's PID).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from vane.client.cli_options import JsonOpt, KeyOpt, PassOpt, StoreOpt
from vane.client.cli_views import json_text
from vane.client.files import store_files
from vane.client.persistence import TrackerSlots
from vane.shared.artifact import ModelArtifact, check_same_encoder, check_same_taxonomy, coverage_problem
from vane.shared.errors import ConfigError, ModelError, TaxonomyError
from vane.shared.spec import ModelSpec
from vane.shared.taxonomy import Taxonomy
from vane.shared.vocabularies import describe_taxonomy, taxonomy_name
from vane.shared.weights import Weights

out = Console()


def _open(store: Path, key_file: Path | None, passphrase_env: str | None, must_exist: bool = True) -> Any:
    from vane.client.cli_client import _open as open_tracker  # cli_client imports this module at its end

    return open_tracker(store, key_file, passphrase_env, must_exist)


def _print_json(data: Any) -> None:
    print(json_text(data))


def model_info(tracker: Any) -> dict[str, Any]:
    """What ``vane client model`` shows of an open tracker."""
    slots = TrackerSlots(tracker.store)
    if not tracker.has_model:
        return {"installed": False}
    blob, _ = slots.model()
    label = slots.weights_label()
    tax: Taxonomy = tracker.taxonomy
    return {
        "installed": True,
        "version": tracker.model_version,
        "created": label[1] if label is not None else _artifact_date(blob),
        "installed_at": slots.model_date(),
        "spec_hash": tracker.spec.hash,
        "taxonomy": {"name": taxonomy_name(tax) or "custom", "version": tax.version, "size": len(tax)},
        "model_bytes": len(blob or b""),
    }


def _artifact_date(blob: bytes | None) -> str | None:
    return ModelArtifact.from_bytes(blob).created if blob and ModelArtifact.is_artifact(blob) else None


def model_command(store: StoreOpt, key_file: KeyOpt = None, passphrase_env: PassOpt = None,
                  as_json: JsonOpt = False) -> None:
    """Show the model this device answers with: its version, taxonomy and date."""
    with _open(store, key_file, passphrase_env) as tracker:
        info = model_info(tracker)
        taxonomy = tracker.taxonomy
    if as_json:
        _print_json(info)
        return
    if not info["installed"]:
        out.print("no model installed: answers come from the profile alone (source=\"profile\").\n"
                  f"install one:  vane client install-model --store {store} --file MODEL.vane", markup=False,
                  highlight=False)
        return
    lines = [
        f"version:    {info['version']}",
        f"created:    {info['created'] or 'unknown'}",
        f"installed:  {info['installed_at'] or 'unknown'}",
        f"taxonomy:   {describe_taxonomy(taxonomy)}",
        f"spec:       {info['spec_hash']}",
        f"size:       {info['model_bytes'] / 1e6:.2f} MB",
    ]
    out.print("\n".join(lines), markup=False, highlight=False)


def registry_artifact(registry: Path, version: str | None) -> ModelArtifact:
    """The artifact of ``version`` (default the newest) of the model registry ``registry``.

    Raises
    ------
    ConfigError
        When the registry, the version or a checkpoint file is missing or unreadable.
    """
    index = registry / "registry.json"
    try:
        entries = json.loads(index.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{str(index)!r} is not a readable model registry ({exc}); expected the registry "
                          "directory of a run (OUT/registry)") from None
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"model registry {str(registry)!r} holds no published version")
    ids = [str(e.get("id")) for e in entries if isinstance(e, dict)]
    if version is not None and version not in ids:
        raise ConfigError(f"model registry {str(registry)!r} has no version {version!r}; it has {', '.join(ids)}")
    entry = entries[ids.index(version)] if version is not None else entries[-1]
    folder = Path(entry["path"])
    try:
        return ModelArtifact((folder / "model.tflite").read_bytes(), ModelSpec.load(folder / "spec.json"),
                             Taxonomy.load(folder / "taxonomy.json"), str(entry["id"]), str(entry["created_at"]),
                             Weights.load(folder / "weights.vw"), _encoder_of(entry))
    except OSError as exc:
        raise ConfigError(f"version {entry['id']!r}: checkpoint {str(folder)!r} is incomplete: {exc}") from None


def _encoder_of(entry: dict[str, Any]) -> str | None:
    encoder = entry.get("encoder_version")  # absent in a registry.json written before the field existed
    if encoder is not None and not isinstance(encoder, str):
        raise ConfigError(f"version {entry['id']!r}: encoder_version is {encoder!r}; expected a version string or null")
    return encoder


def _install_encoder_hint(store: Path | None) -> str:
    return f"vane client install-encoder --store {store or 'STORE'} --registry DIR --version"


def install_artifact(tracker: Any, artifact: ModelArtifact, store: Path | None = None) -> None:
    """Install ``artifact`` into an open tracker: refused, with nothing changed, for another taxonomy or (a model
    that reads text) another encoder than the device's."""
    check_same_encoder(artifact.version, artifact.encoder_version, artifact.spec.text_dim,
                       getattr(tracker.store, "encoder_version", None),
                       _install_encoder_hint(store))
    if tracker.taxonomy is not None:
        check_same_taxonomy(tracker.taxonomy, artifact.taxonomy, "install-model")
    problem = coverage_problem((ev.categories for _, ev in tracker.store.events()), artifact.taxonomy)
    if problem is not None:
        raise TaxonomyError(f"install-model: {problem}")
    tracker.install_model(artifact.blob, artifact.version, artifact.taxonomy)
    tracker.set_weights(artifact.weights if artifact.weights is not None else tracker.get_weights())
    TrackerSlots(tracker.store).label_weights(artifact.version, artifact.created)


def device_encoder(store: Path, key_file: Path | None, passphrase_env: str | None) -> str | None:
    """The version of the encoder ``store`` keeps (None: none, or no store yet), read from the plain store: a
    tracker saves its state on close, so checking through one would change the file even when refusing."""
    if not store.exists():
        return None
    from vane.client.api.tokens import with_server_hint
    from vane.client.embeddings import ENCODER_VERSION_SLOT
    from vane.client.store import EventStore
    from vane.shared.errors import StoreInUseError

    passphrase = os.environ.get(passphrase_env) if passphrase_env is not None else None
    if passphrase_env is not None and not passphrase:
        raise typer.BadParameter(f"environment variable {passphrase_env!r} is unset or empty",
                                 param_hint="--passphrase-env")
    try:
        with EventStore.open(store, passphrase=passphrase, key_file=None if passphrase else
                             key_file or store.with_name(store.name + ".key")) as plain:
            raw = plain.get_state(ENCODER_VERSION_SLOT)
    except StoreInUseError as exc:
        raise with_server_hint(exc, store) from None
    return None if raw is None else raw.decode("utf-8")


def install_model_command(
    store: StoreOpt,
    key_file: KeyOpt = None,
    passphrase_env: PassOpt = None,
    file: Annotated[Path | None, typer.Option("--file", help="A model artifact (vane server export-model).",
                                              dir_okay=False)] = None,
    registry: Annotated[Path | None, typer.Option("--registry", help="A model registry directory (OUT/registry).",
                                                  file_okay=False)] = None,
    version: Annotated[str | None, typer.Option("--version", help="Registry version id (default: the newest).")]
    = None,
    as_json: JsonOpt = False,
) -> None:
    """Install a model into this device's store: from an artifact file or a model registry."""
    if (file is None) == (registry is None):
        raise typer.BadParameter("give exactly one of --file and --registry", param_hint="--file/--registry")
    if version is not None and registry is None:
        raise typer.BadParameter("--version needs --registry", param_hint="--version")
    try:
        artifact = (registry_artifact(registry, version) if registry is not None
                    else ModelArtifact.load(file or ""))
    except ModelError as exc:
        raise ModelError(f"{exc} (export one with `vane server export-model OUT`)") from None
    if artifact.spec.text_dim:  # refused before a tracker opens: the store stays byte-identical
        check_same_encoder(artifact.version, artifact.encoder_version, artifact.spec.text_dim,
                           device_encoder(store, key_file, passphrase_env),
                           _install_encoder_hint(store))
    created = [p for p in store_files(store, key_file) if not p.exists()]
    try:
        with _open(store, key_file, passphrase_env, must_exist=False) as tracker:
            install_artifact(tracker, artifact, store)
            info = model_info(tracker)
    except BaseException:
        if store in created:
            for path in created:
                path.unlink(missing_ok=True)
        raise
    if as_json:
        _print_json(info)
        return
    out.print(f"installed {artifact.version} into {store}: taxonomy {describe_taxonomy(artifact.taxonomy)}",
              markup=False, highlight=False)


__all__ = ["install_artifact", "install_model_command", "model_command", "model_info",
           "registry_artifact"]
