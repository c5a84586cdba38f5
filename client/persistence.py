"""What a tracker keeps in its encrypted store besides the events.

Named state blobs of the :class:`~vane.client.store.EventStore` (their names and encodings are
part of the store format and never change):

=========================  ===========================================================
``tracker/model``          the ``.tflite`` model last installed
``tracker/model-version``  its label (UTF-8)
``tracker/weights``        trained or federated weights (:class:`~vane.shared.weights.Weights`)
``tracker/taxonomy``       the model's category vocabulary (JSON)
``tracker/mix``            the blend the federation recommended (JSON, ``MIX_FIELDS`` names)
``tracker/state``          the answer cache: personal state and LSTM state (JSON); stored
                           ``derived``, so forget and retention delete it with the events
``import/<hash of path>``  the newest visit time imported from one history file (ISO-8601)
=========================  ===========================================================

:func:`choose_model` decides, when a tracker opens, which model and taxonomy it runs.
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any, TypeAlias

from vane.client.predictor import Mix
from vane.client.runtime import LiteModel
from vane.client.store import EventStore
from vane.shared.blend import MIX_FIELDS
from vane.shared.errors import SpecMismatchError, TaxonomyError
from vane.shared.taxonomy import Taxonomy
from vane.shared.weights import Weights

STATE = "tracker/state"
MODEL = "tracker/model"
MODEL_VERSION = "tracker/model-version"
WEIGHTS = "tracker/weights"
TAXONOMY = "tracker/taxonomy"
MIX = "tracker/mix"

#: A model as bytes or a ``.tflite`` path.
ModelSource: TypeAlias = bytes | str | os.PathLike[str]
#: A taxonomy, or the path of its JSON file.
TaxonomySource: TypeAlias = Taxonomy | str | os.PathLike[str]


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
        """Keep a model blob and its version label."""
        self.store.put_state(MODEL, blob)
        self.store.put_state(MODEL_VERSION, (version or "").encode())

    def weights(self) -> Weights | None:
        """The stored weights, if any."""
        stored = self.store.get_state(WEIGHTS)
        return Weights.from_bytes(stored) if stored is not None else None

    def save_weights(self, weights: Weights) -> None:
        """Keep ``weights``."""
        self.store.put_state(WEIGHTS, weights.to_bytes())

    def mix(self) -> Mix | None:
        """The recommended mix, if one was kept."""
        stored = self.store.get_state(MIX)
        return Mix.of(json.loads(stored)) if stored else None

    def save_mix(self, mix: Mix) -> None:
        """Keep ``mix``; writes only a change (every federated round resends it)."""
        encoded = json.dumps(dict(zip(MIX_FIELDS, mix.weights(), strict=True))).encode()
        if self.store.get_state(MIX) != encoded:
            self.store.put_state(MIX, encoded)

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


def choose_model(slots: TrackerSlots, model: ModelSource | None, taxonomy: TaxonomySource | None,
                 model_version: str | None) -> tuple[LiteModel | None, bytes | None, str | None, Taxonomy | None]:
    """The model a tracker opens with: ``(model, its blob, its version, its taxonomy)``.

    ``model``/``taxonomy`` given by the app win over the stored ones; a model without a version
    label is labelled by its hash. Stored weights are loaded into a stored model of the same spec.

    Raises
    ------
    TaxonomyError
        A model without a taxonomy.
    SpecMismatchError
        A taxonomy whose size is not the model's number of categories.
    """
    if isinstance(taxonomy, Taxonomy):
        tax: Taxonomy | None = taxonomy
    else:
        tax = Taxonomy.load(taxonomy) if taxonomy is not None else slots.taxonomy()
    blob: bytes | None
    if model is None:
        blob, model_version = slots.model()
    else:
        blob = model if isinstance(model, bytes) else Path(model).read_bytes()
        model_version = model_version or hashlib.sha256(blob).hexdigest()[:12]
    lite = LiteModel.from_bytes(blob) if blob is not None else None
    if lite is not None and tax is None:
        raise TaxonomyError("a model needs its taxonomy: pass taxonomy=... (the one the model was trained with)")
    if lite is not None and tax is not None and len(tax) != lite.spec.num_categories:
        raise SpecMismatchError(f"taxonomy has {len(tax)} categories but the model expects {lite.spec.num_categories}")
    if model is None and lite is not None:
        weights = slots.weights()
        if weights is not None and weights.spec_hash == lite.spec.hash:
            lite.set_weights(weights)
    return lite, blob, model_version, tax
