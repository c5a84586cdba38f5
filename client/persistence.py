"""What a tracker keeps in its encrypted store besides the events.

Named state blobs of the :class:`~vane.client.store.EventStore` (their names and encodings are
part of the store format and never change):

=========================  ===========================================================
``tracker/model``          the model last installed: a ``.tflite``, or a model artifact
                           (:mod:`vane.shared.artifact`: the model with its spec, taxonomy and weights)
``tracker/model-version``  its label (UTF-8)
``tracker/model-date``     when it was installed (ISO-8601 UTC)
``tracker/weights``        trained or federated weights (:class:`~vane.shared.weights.Weights`);
                           emptied when another model is installed
``tracker/weights-version`` the version label of those weights and their SHA-256 (JSON): a federated
                           round's global weights are labelled with the round's version
``tracker/taxonomy``       the model's category vocabulary (JSON)
``tracker/mix``            the blend the federation recommended (JSON, ``MIX_FIELDS`` names)
``tracker/population``     the population statistics artifact shipped with the model
                           (:mod:`vane.shared.population_artifact`; checked against the taxonomy)
``tracker/state``          the answer cache: personal state and LSTM state (JSON); stored
                           ``derived``, so forget and retention delete it with the events
``import/<hash of path>``  the newest visit time imported from one history file (ISO-8601)
=========================  ===========================================================

:func:`choose_model` decides, when a tracker opens, which model and taxonomy it runs, and the
version it answers with: the label of the stored weights when they are still the ones labelled
(``+local`` when they were trained here since), else the model's label.

The device's taxonomy is the one its store keeps (pinned by the first model installed), or the one
the app passes; a model artifact for another taxonomy is refused
(:func:`vane.shared.artifact.check_same_taxonomy`, a :class:`~vane.shared.errors.TaxonomyError`
naming both hashes), never mapped to ``other``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeAlias

from vane.client.predictor import Mix
from vane.client.runtime import LiteModel
from vane.client.store import EventStore
from vane.shared.artifact import ModelArtifact, check_same_taxonomy, coverage_problem
from vane.shared.blend import MIX_FIELDS
from vane.shared.errors import ModelError, SpecMismatchError, TaxonomyError
from vane.shared.taxonomy import Taxonomy
from vane.shared.weights import Weights

STATE = "tracker/state"
MODEL = "tracker/model"
MODEL_VERSION = "tracker/model-version"
MODEL_DATE = "tracker/model-date"
WEIGHTS = "tracker/weights"
WEIGHTS_VERSION = "tracker/weights-version"
TAXONOMY = "tracker/taxonomy"
MIX = "tracker/mix"
POPULATION = "tracker/population"

#: A model as bytes or a ``.tflite`` path.
ModelSource: TypeAlias = bytes | str | os.PathLike[str]
#: A taxonomy, or the path of its JSON file.
TaxonomySource: TypeAlias = Taxonomy | str | os.PathLike[str]

logger = logging.getLogger("vane.client")


class TrackerSlots:
    """Typed reads and writes of a tracker's state blobs in ``store``."""

    def __init__(self, store: EventStore) -> None:
        self.store = store

    def taxonomy(self) -> Taxonomy | None:
        """The stored taxonomy, if any."""
        stored = self.store.get_state(TAXONOMY)
        return Taxonomy.from_dict(json.loads(stored)) if stored else None

    def save_taxonomy(self, taxonomy: Taxonomy) -> None:
        """Keep ``taxonomy``."""
        self.store.put_state(TAXONOMY, json.dumps(taxonomy.to_dict()).encode())

    def model(self) -> tuple[bytes | None, str | None]:
        """The stored model blob and its version label (None for each when absent or empty)."""
        stored_version = self.store.get_state(MODEL_VERSION)
        return self.store.get_state(MODEL), stored_version.decode() if stored_version else None

    def save_model(self, blob: bytes, version: str | None) -> None:
        """Keep a model blob (a ``.tflite`` or an artifact) and its version label; drop the weights
        kept for the previous model (they are not this model's)."""
        self.store.put_state(MODEL, blob)
        self.store.put_state(MODEL_VERSION, (version or "").encode())
        self.store.put_state(MODEL_DATE, datetime.now(UTC).isoformat(timespec="seconds").encode())
        self.store.put_state(WEIGHTS, b"")
        self.store.put_state(WEIGHTS_VERSION, b"")

    def model_date(self) -> str | None:
        """When the stored model was installed (None for stores from before this was kept)."""
        stored = self.store.get_state(MODEL_DATE)
        return stored.decode() if stored else None

    def weights(self) -> Weights | None:
        """The stored weights, if any."""
        stored = self.store.get_state(WEIGHTS)
        return Weights.from_bytes(stored) if stored else None

    def save_weights(self, weights: Weights) -> None:
        """Keep ``weights``."""
        self.store.put_state(WEIGHTS, weights.to_bytes())

    def label_weights(self, version: str, created: str | None = None) -> None:
        """Label the stored weights (e.g. a round's global weights) with ``version`` and the date they
        were made (default now)."""
        stored = self.store.get_state(WEIGHTS) or b""
        record = {"version": version, "sha256": hashlib.sha256(stored).hexdigest(),
                  "date": created or datetime.now(UTC).isoformat(timespec="seconds")}
        self.store.put_state(WEIGHTS_VERSION, json.dumps(record).encode())

    def weights_label(self) -> tuple[str, str] | None:
        """``(version, date)`` of the stored weights: the label, with ``+local`` when they changed since."""
        raw = self.store.get_state(WEIGHTS_VERSION)
        stored = self.store.get_state(WEIGHTS)
        if not raw or not stored:
            return None
        record = json.loads(raw)
        same = record.get("sha256") == hashlib.sha256(stored).hexdigest()
        return str(record["version"]) + ("" if same else "+local"), str(record.get("date", ""))

    def mix(self) -> Mix | None:
        """The recommended mix, if one was kept."""
        stored = self.store.get_state(MIX)
        return Mix.of(json.loads(stored)) if stored else None

    def save_mix(self, mix: Mix) -> None:
        """Keep ``mix``; writes only a change (every federated round resends it)."""
        encoded = json.dumps(dict(zip(MIX_FIELDS, mix.weights(), strict=True))).encode()
        if self.store.get_state(MIX) != encoded:
            self.store.put_state(MIX, encoded)

    def population(self) -> bytes | None:
        """The kept population statistics artifact's bytes (None when none was received)."""
        return self.store.get_state(POPULATION) or None

    def save_population(self, artifact: bytes) -> bool:
        """Keep a population statistics artifact (already checked); writes only a change. Returns whether it did."""
        if self.store.get_state(POPULATION) == artifact:
            return False
        self.store.put_state(POPULATION, bytes(artifact))
        return True

    def state(self) -> dict[str, Any] | None:
        """The saved answer cache, if any."""
        raw = self.store.get_state(STATE)
        return json.loads(raw) if raw else None

    def save_state(self, state: dict[str, Any]) -> None:
        """Keep the answer cache, marked as derived from the events (forget and retention delete it)."""
        self.store.put_state(STATE, json.dumps(state).encode(), derived=True)

    @staticmethod
    def _cursor_name(path: str | os.PathLike[str]) -> str:
        return "import/" + hashlib.sha256(str(Path(path).resolve()).encode()).hexdigest()[:24]

    def import_cursor(self, path: str | os.PathLike[str]) -> datetime | None:
        """The newest visit time imported from the history file ``path``, if any."""
        cursor = self.store.get_state(self._cursor_name(path))
        return datetime.fromisoformat(cursor.decode()) if cursor else None

    def save_import_cursor(self, path: str | os.PathLike[str], when: datetime) -> None:
        """Remember that ``path`` was imported up to ``when``."""
        self.store.put_state(self._cursor_name(path), when.isoformat().encode())


def _load_taxonomy(taxonomy: TaxonomySource | None) -> Taxonomy | None:
    if taxonomy is None or isinstance(taxonomy, Taxonomy):
        return taxonomy
    return Taxonomy.load(taxonomy)


def _model_bytes(model: ModelSource) -> bytes:
    if isinstance(model, bytes):
        return model
    try:
        return Path(model).expanduser().read_bytes()
    except OSError as exc:
        raise ModelError(f"model file {str(model)!r} cannot be read: {exc.strerror or exc}") from None


def choose_model(slots: TrackerSlots, model: ModelSource | None, taxonomy: TaxonomySource | None,
                 model_version: str | None) -> tuple[LiteModel | None, bytes | None, str | None, Taxonomy | None]:
    """The model a tracker opens with: ``(model, its blob as stored, its version, its taxonomy)``.

    ``model`` given by the app wins over the stored one. A model artifact brings its taxonomy, version
    and weights; a plain ``.tflite`` needs ``taxonomy`` (or the stored one) and is labelled by its hash.
    The stored weights are loaded into the stored model when they are of its spec.

    Raises
    ------
    TaxonomyError
        A plain model without a taxonomy; an artifact whose taxonomy is not the device's (the app's
        ``taxonomy``, else the stored one), naming both hashes.
    SpecMismatchError
        A taxonomy whose size is not the model's number of categories, or an artifact whose manifest
        spec is not the one its ``.tflite`` embeds.
    ModelError
        A damaged artifact or an unreadable model.
    """
    device_tax = _load_taxonomy(taxonomy)
    stored_tax = slots.taxonomy()
    blob: bytes | None
    if model is None:
        blob, model_version = slots.model()
    else:
        blob = _model_bytes(model)
    artifact = ModelArtifact.from_bytes(blob, "the model") if blob and ModelArtifact.is_artifact(blob) else None
    if artifact is not None:
        pinned = device_tax or stored_tax
        if model is not None and pinned is not None:
            check_same_taxonomy(pinned, artifact.taxonomy, "opening the tracker")
        tax: Taxonomy | None = artifact.taxonomy
        model_version = model_version or artifact.version
    else:
        tax = device_tax or stored_tax
        if model is not None and blob is not None:
            model_version = model_version or hashlib.sha256(blob).hexdigest()[:12]
    lite = LiteModel.from_bytes(artifact.blob if artifact is not None else blob) if blob else None
    if lite is None:
        return None, None, model_version, tax
    if tax is None:
        raise TaxonomyError("a .tflite model needs its taxonomy: pass taxonomy=... (the one the model was trained "
                            "with), or open a model artifact (`vane server export-model`), which carries it")
    if len(tax) != lite.spec.num_categories:
        raise SpecMismatchError(f"taxonomy has {len(tax)} categories but the model expects {lite.spec.num_categories}")
    if artifact is not None:
        if artifact.spec.hash != lite.spec.hash:
            raise SpecMismatchError(f"the artifact's manifest names spec {artifact.spec.hash} but its .tflite "
                                    f"embeds spec {lite.spec.hash}")
        if artifact.weights is not None:
            lite.set_weights(artifact.weights)
    if model is None:
        weights = slots.weights()
        if weights is not None and weights.spec_hash == lite.spec.hash:
            lite.set_weights(weights)
            label = slots.weights_label()
            model_version = label[0] if label is not None else model_version
    else:
        _warn_on_coverage(slots, tax)
    return lite, blob, model_version, tax


def _warn_on_coverage(slots: TrackerSlots, taxonomy: Taxonomy) -> None:
    problem = coverage_problem((ev.categories for _, ev in slots.store.events()), taxonomy)
    if problem is not None:
        logger.warning("%s: %s", slots.store.path, problem)
