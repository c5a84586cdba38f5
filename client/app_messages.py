"""What the ClientApp reads from a train or evaluate message, checked before anything on the device changes.

- :class:`ClientSettings`: the round settings (message config, then ``run_config``, then defaults);
- :class:`RoundMessage`: the message's records (``config``, ``arrays`` with ``weights``) and settings;
- :class:`ModelPlan`: the model to install, the blend and the global weights, checked in full against
  the device's (or the newly sent) model before :meth:`ModelPlan.apply` touches the tracker;
- :func:`global_weights`: the weights exactly as sent, a finite float32 vector of the spec's length;
- :func:`weights_label`: the version of those weights (the round that produced them).

A device keeps the taxonomy of its store: a model for another one is refused with a
:class:`~vane.shared.errors.TaxonomyError` naming both hashes, and so is a model under whose taxonomy
most of the device's categorised events would become ``other``
(:func:`vane.shared.artifact.coverage_problem`).

A malformed message raises a :class:`~vane.shared.errors.VaneError` (most often
:class:`~vane.shared.errors.MessageError` or :class:`~vane.shared.errors.ConfigError`) naming the
record, key or value; :func:`vane.client.app.replying_errors` turns it into an error reply.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from flwr.app import Array, ConfigRecord, Message
from vane.client.persistence import TrackerSlots
from vane.client.runtime import LiteModel
from vane.client.tracker import InterestTracker, Mix
from vane.shared import protocol as p
from vane.shared.artifact import (
    check_same_encoder,
    check_same_taxonomy,
    coverage_problem,
    model_identity,
    round_version,
)
from vane.shared.blend import mix_grid
from vane.shared.errors import ConfigError, MessageError, SpecMismatchError, TaxonomyError, VaneError
from vane.shared.spec import ModelSpec
from vane.shared.taxonomy import Taxonomy
from vane.shared.weights import Weights, num_weights


@dataclass(frozen=True)
class ClientSettings:
    """Settings of one round: the message config first, then run_config, then these defaults.

    The keys are the field names in kebab-case, read by :func:`vane.shared.protocol.read_settings`
    (so a bool of ``"maybe"`` raises, as on the server). ``proximal-mu`` is read from the message
    config only: ``flwr run`` declares FedProx's server setting in run_config whatever the strategy.
    """

    local_epochs: int = 1
    learning_rate: float = 0.0
    delta_float16: bool = False
    seed: int = 0
    holdout_fraction: float = 0.1
    proximal_mu: float = field(default=0.0, metadata=p.only_from(p.MESSAGE_CONFIG))
    evaluate_model_only: bool = True
    server_round: int = 0
    mix_grid_step: float = 0.0
    train_parts: str = "all"

    def __post_init__(self) -> None:
        if self.local_epochs < 1:
            raise ConfigError(f"local-epochs is {self.local_epochs}; expected >= 1")
        if self.train_parts not in p.TRAIN_PARTS:
            raise ConfigError(f"train-parts is {self.train_parts!r}; expected one of {', '.join(p.TRAIN_PARTS)}")
        if not 0.0 <= self.holdout_fraction < 1.0:
            raise ConfigError(f"holdout-fraction is {self.holdout_fraction}; expected 0 <= value < 1")
        if self.learning_rate < 0 or self.proximal_mu < 0:
            raise ConfigError("learning-rate and proximal-mu must be >= 0")
        if self.mix_grid_step:
            try:
                mix_grid(self.mix_grid_step)
            except ValueError as exc:
                raise ConfigError(f"mix-grid-step: {exc} (0 turns mix scoring off)") from None

    @classmethod
    def read(cls, config: Mapping[str, Any], run_config: Mapping[str, Any]) -> ClientSettings:
        """The settings of a round from the message ``config`` and the run's ``run_config``.

        Raises
        ------
        ConfigError
            When a value has the wrong type or is out of range; the message names the key.
        """
        return p.read_settings(cls, (p.MESSAGE_CONFIG, config), (p.RUN_CONFIG, run_config))

    def mix_candidates(self) -> list[tuple[float, ...]]:
        """The candidate blends to score on the held-out events (none when ``mix-grid-step`` is 0)."""
        return mix_grid(self.mix_grid_step) if self.mix_grid_step else []

    def round_seed(self, node_config: Mapping[str, Any]) -> int:
        """A seed fixed by (seed, round, device), so a resumed run replays the same shuffles."""
        device = str(node_config.get(p.NODE_PARTITION_ID_KEY, node_config.get(p.NODE_STORE_KEY, "")))
        return zlib.crc32(f"{self.seed}:{self.server_round}:{device}".encode())



@dataclass(frozen=True)
class RoundMessage:
    """A train or evaluate message, checked: its config, its settings and the global weights' array."""

    config: ConfigRecord
    settings: ClientSettings
    weights: Array

    @classmethod
    def read(cls, msg: Message, run_config: Mapping[str, Any]) -> RoundMessage:
        """Check the records of ``msg`` and read its settings; nothing on the device is touched.

        Raises
        ------
        MessageError
            When the ``config`` ConfigRecord or the ``arrays`` ArrayRecord with ``weights`` is missing.
        ConfigError
            When a setting has the wrong type or is out of range.
        """
        kind = str(msg.metadata.message_type)
        if not msg.has_content():
            raise MessageError(f"the {kind} message carries no content; expected the records "
                               f"{p.CONFIG_RECORD!r} and {p.ARRAYS_RECORD!r}")
        content = msg.content
        config = content.config_records.get(p.CONFIG_RECORD)
        if config is None:
            raise MessageError(f"the {kind} message has no ConfigRecord {p.CONFIG_RECORD!r} (records: "
                               f"{sorted(content.keys())}); expected one with the round settings")
        arrays = content.array_records.get(p.ARRAYS_RECORD)
        if arrays is None or p.WEIGHTS_KEY not in arrays:
            raise MessageError(f"the {kind} message has no ArrayRecord {p.ARRAYS_RECORD!r} holding "
                               f"{p.WEIGHTS_KEY!r} (records: {sorted(content.keys())}); expected the global weights")
        settings = ClientSettings.read(config, run_config)
        return cls(config, settings, arrays[p.WEIGHTS_KEY])


@dataclass(frozen=True)
class ModelPlan:
    """What a message changes in the device's model, checked in full before any of it is applied."""

    install: tuple[bytes, str, Taxonomy | None] | None
    mix: Mix | None
    weights: Weights

    @classmethod
    def check(cls, tracker: InterestTracker, message: RoundMessage) -> ModelPlan:
        """The model to install (when the server sends a new version), the blend and the global weights.

        Raises
        ------
        MessageError, ConfigError, ModelError, SpecMismatchError, TaxonomyError
            When any part is unusable; the tracker and its store are left as they were.
        """
        config = message.config
        version = config.get(p.MODEL_VERSION_KEY, "")
        if not isinstance(version, str):
            raise MessageError(f"{p.MODEL_VERSION_KEY} is {version!r}; expected a string")
        spec = tracker.spec
        install = None
        if version and version not in (tracker.model_version, _identity(tracker)):
            blob = config.get(p.MODEL_BLOB_KEY)
            if not isinstance(blob, bytes):
                raise ConfigError(f"this device lacks model version {version!r} and the server did not send it")
            spec = LiteModel.from_bytes(blob).spec  # a bad blob fails here, before anything changes
            taxonomy = _taxonomy(config)
            _check_taxonomy(tracker, taxonomy or tracker.taxonomy)
            install = (blob, version, taxonomy)
        if spec is None:
            raise ConfigError("this device has no model and the message does not send one "
                              f"({p.MODEL_VERSION_KEY} and {p.MODEL_BLOB_KEY})")
        spec_hash = config.get(p.SPEC_HASH_KEY, spec.hash)
        if spec_hash != spec.hash:
            raise SpecMismatchError(f"server weights are for spec {spec_hash!r}; this device runs {spec.hash}")
        encoder = config.get(p.ENCODER_VERSION_KEY)
        check_same_encoder(version or str(tracker.model_version), encoder if isinstance(encoder, str) else None,
                           spec.text_dim, getattr(tracker.store, "encoder_version", None))
        return cls(install, _mix(config), global_weights(message.weights, spec))

    def apply(self, tracker: InterestTracker, label: str | None = None) -> None:
        """Install the model (if new), keep the blend, load the global weights (labelled ``label``:
        the tracker's next open answers with that version, see :func:`weights_label`)."""
        if self.install is not None:
            tracker.install_model(*self.install)
        if self.mix is not None:
            tracker.recommend_mix(self.mix)
        self.apply_weights(tracker, label)

    def apply_weights(self, tracker: InterestTracker, label: str | None = None) -> None:
        """Load the global weights into ``tracker`` (and its store), labelled ``label`` when given."""
        tracker.set_weights(self.weights)
        if label:
            TrackerSlots(tracker.store).label_weights(label)


def weights_label(config: ConfigRecord, settings: ClientSettings, spec_hash: str, trained_rounds: int) -> str:
    """The version of the global weights a message carries: the output of round ``server-round - 1``
    in a train message (``trained_rounds=1`` back), of round ``server-round`` in an evaluate message
    (0 back: Flower evaluates the round's aggregate); the model's version before round 1."""
    done = settings.server_round - trained_rounds
    return round_version(done, spec_hash) if done >= 1 else str(config.get(p.MODEL_VERSION_KEY, "") or "")


def _identity(tracker: InterestTracker) -> str | None:
    spec, taxonomy = tracker.spec, tracker.taxonomy
    return model_identity(spec, taxonomy) if spec is not None and taxonomy is not None else None


def _check_taxonomy(tracker: InterestTracker, taxonomy: Taxonomy | None) -> None:
    """Refuse a model for another vocabulary than the device's, or one its events would mostly not fit."""
    if taxonomy is None:
        return
    if tracker.taxonomy is not None:
        check_same_taxonomy(tracker.taxonomy, taxonomy, "installing the server's model")
    problem = coverage_problem((ev.categories for _, ev in tracker.store.events()), taxonomy)
    if problem is not None:
        raise TaxonomyError(f"installing the server's model: {problem}")


def _taxonomy(config: ConfigRecord) -> Taxonomy | None:
    if p.TAXONOMY_KEY not in config:
        return None
    raw = config[p.TAXONOMY_KEY]
    try:
        return Taxonomy.from_dict(json.loads(str(raw)))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        if isinstance(exc, VaneError):
            raise
        raise MessageError(f"{p.TAXONOMY_KEY} is not a taxonomy as JSON ({type(exc).__name__}: {exc})") from None


def _mix(config: ConfigRecord) -> Mix | None:
    if p.MIX_KEY not in config:
        return None
    values = config[p.MIX_KEY]
    if isinstance(values, str):  # JSON text (what the server sends: SecAgg+'s legacy FitIns carries scalars only)
        try:
            values = json.loads(values)
        except ValueError:
            raise MessageError(f"{p.MIX_KEY} is {values[:80]!r}; expected a JSON list of numbers") from None
    if not isinstance(values, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                               for v in values):
        raise MessageError(f"{p.MIX_KEY} is {values!r}; expected a list of numbers")
    return Mix.of([float(v) for v in values])


def global_weights(array: Array, spec: ModelSpec) -> Weights:
    """The global weights of ``array``, exactly as sent: a finite float32 vector of ``spec``'s length.

    Raises
    ------
    MessageError
        When the array is not a NumPy array, not float32 (int32 weights are not converted), not a
        vector of ``num_weights(spec)`` values, or holds NaN or infinite values.
    """
    try:
        flat = array.numpy()
    except Exception as exc:
        raise MessageError(f"the global weights cannot be decoded ({type(exc).__name__}: {exc})") from None
    expected = num_weights(spec)
    if flat.dtype != np.float32:
        raise MessageError(f"the global weights have dtype {flat.dtype}; expected float32 (nothing is converted)")
    if flat.shape != (expected,):
        raise MessageError(f"the global weights have shape {flat.shape}; expected ({expected},) for spec {spec.hash}")
    if not np.all(np.isfinite(flat)):
        raise MessageError("the global weights hold NaN or infinite values; expected finite values")
    return Weights(spec.hash, flat.copy())
