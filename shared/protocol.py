"""The federation protocol: every key the ClientApp, the ServerApp and the simulations exchange.

A Flower message is a ``RecordDict`` of named records. Vane's messages hold:

=================  ===========  ==================================================================
record             kind         keys
=================  ===========  ==================================================================
``arrays``         ArrayRecord  :data:`WEIGHTS_KEY` (server → device), :data:`DELTA_KEY` (reply)
``config``         ConfigRecord round settings (:data:`LOCAL_EPOCHS_KEY` …), :data:`MODEL_VERSION_KEY`,
                                :data:`MODEL_BLOB_KEY`, :data:`SPEC_HASH_KEY`, :data:`TAXONOMY_KEY`,
                                :data:`MIX_KEY`, Flower's :data:`CLIPPING_NORM_KEY`
``metrics``        MetricRecord :data:`NUM_EXAMPLES_KEY`, train and evaluate metrics, :func:`mix_metric_key`
=================  ===========  ==================================================================

Settings (the server's ``run_config``, the round settings in a message config) are frozen
dataclasses whose fields are the kebab-case keys; :func:`read_settings` is the one reader, with
one set of rules for every side:

- **bool** accepts ``True``/``False``, the integers 0 and 1, and the strings true/false, 1/0,
  yes/no in any case;
- **int** accepts integers and integral floats (``3.0``); never a bool;
- **float** accepts finite integers and floats; never a bool;
- **str** accepts strings.

Anything else raises :class:`~vane.shared.errors.ConfigError` naming the source, the key, the
value and what was expected. Sources are read in precedence order (the first that holds a key
wins); a field whose metadata is :func:`only_from` reads only the sources named there.

NumPy-free, standard library only: both sides import this module.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import fields, is_dataclass
from typing import Any, TypeVar

from vane.shared.errors import ConfigError

# --- records of a message -------------------------------------------------------
#: RecordDict key of the ArrayRecord, of the ConfigRecord and of the MetricRecord.
ARRAYS_RECORD = "arrays"
CONFIG_RECORD = "config"
METRICS_RECORD = "metrics"

# --- arrays ------------------------------------------------------------------------
#: The global weights, one flat float32 vector (server → device).
WEIGHTS_KEY = "weights"
#: The device's update ``local - global`` (float32, or float16 with ``delta-float16``); the only array a device sends.
DELTA_KEY = "delta"

# --- message config: the model ----------------------------------------------------
#: Version of the model the weights belong to (``spec-hash.taxonomy-version``).
MODEL_VERSION_KEY = "model-version"
#: The LiteRT training export, sent to nodes that lack :data:`MODEL_VERSION_KEY`.
MODEL_BLOB_KEY = "model-blob"
#: Hash of the ModelSpec the weights are laid out for.
SPEC_HASH_KEY = "spec-hash"
#: The taxonomy as JSON (``Taxonomy.to_dict``).
TAXONOMY_KEY = "taxonomy"
#: The text encoder version a model that reads text is trained against (a device with another refuses the round).
ENCODER_VERSION_KEY = "encoder-version"
#: The blend the server picked: five weights in ``vane.shared.blend.MIX_FIELDS`` order.
MIX_KEY = "mix"

# --- message config: round settings (also run_config keys) -------------------------
LOCAL_EPOCHS_KEY = "local-epochs"
LEARNING_RATE_KEY = "learning-rate"
DELTA_FLOAT16_KEY = "delta-float16"
SEED_KEY = "seed"
HOLDOUT_FRACTION_KEY = "holdout-fraction"
SERVER_ROUND_KEY = "server-round"
PROXIMAL_MU_KEY = "proximal-mu"
EVALUATE_MODEL_ONLY_KEY = "evaluate-model-only"
#: What a device trains in a round: ``all``, ``lstm`` or ``ranker`` (the candidate ranker).
TRAIN_PARTS_KEY = "train-parts"
TRAIN_PARTS = ("all", "lstm", "ranker")
MIX_GRID_STEP_KEY = "mix-grid-step"

# --- message config: federated analytics of the population statistics (vane.server.analytics) ---
#: Marks a train message as the population-statistics round; its value is the round the statistics precede.
POPULATION_ROUND_KEY = "population-round"
#: Per-device clip of the count vector: each entry capped at this, then the L2 norm (0 = no L2 clip).
POPULATION_ENTRY_CAP_KEY = "population-entry-cap"
POPULATION_CLIP_NORM_KEY = "population-clip-norm"
#: Subtracted from every entry before SecAgg+ (half the entry cap: the range is symmetric); 0 in the clear.
POPULATION_CENTER_KEY = "population-center"
#: The published statistics artifact (vane.shared.population_artifact) sent with train messages.
POPULATION_ARTIFACT_KEY = "population-artifact"

# --- Flower's own keys ---------------------------------------------------------------
#: Config key of the clipping norm Flower's client-side DP wrappers send (flwr.supercore.differential_privacy).
CLIPPING_NORM_KEY = "clipping_norm"
#: Metric a device reports under client-side adaptive clipping: 1 when its delta was clipped.
NORM_BIT_KEY = "norm_bit"
#: SecAgg+ records (flwr.common.secure_aggregation.secaggplus_constants).
SECAGG_CONFIGS_RECORD = "secaggplus_configs"
SECAGG_STATE_RECORD = "secaggplus_state"
#: Arrays of the legacy workflow's fit and evaluate instructions (flwr.compat record converters).
LEGACY_FIT_PARAMETERS = "fitins.parameters"
LEGACY_EVALUATE_PARAMETERS = "evaluateins.parameters"

# --- reply metrics ---------------------------------------------------------------------
#: Examples behind a reply; FedAvg weighs replies by it. Every reply carries it.
NUM_EXAMPLES_KEY = "num-examples"
TRAIN_LOSS_KEY = "train-loss"
TRAIN_STEPS_KEY = "train-steps"
HOLDOUT_KEY = "holdout"
#: The evaluate metric the legacy workflow turns into a loss (``1 - ndcg@10``).
NDCG10_KEY = "ndcg@10"
#: The picked blend's device-side means, in a round's evaluate metrics.
MIX_HR1_KEY = "mix-hr@1"
MIX_MRR_KEY = "mix-mrr"
#: In a round's train metrics: updates rejected (bad values, out of the norm bound) and weights capped.
REJECTED_UPDATES_KEY = "rejected-updates"
CAPPED_NUM_EXAMPLES_KEY = "capped-num-examples"

# --- differential privacy, in each round's train metrics -------------------------------
EPSILON_KEY = "dp-epsilon"
EPSILON_NO_AMPLIFICATION_KEY = "dp-epsilon-no-amplification"
#: δ at which ε is reported (also the ``dp-delta`` run_config key); not :data:`DELTA_KEY`.
DP_DELTA_KEY = "dp-delta"
DP_CLIPPING_NORM_KEY = "dp-clipping-norm"
DP_NOISE_STD_KEY = "dp-noise-std"

# --- node_config -------------------------------------------------------------------------
#: Deployment: the encrypted store file, its 0600 key file, or an environment variable holding the passphrase.
NODE_STORE_KEY = "store"
NODE_KEY_FILE_KEY = "key-file"
NODE_PASSPHRASE_ENV_KEY = "passphrase-env"
#: Simulation: which simulated user this node is.
NODE_PARTITION_ID_KEY = "partition-id"

# --- settings sources ----------------------------------------------------------------------
#: Source names for :func:`read_settings`: the message's ConfigRecord and the run's run_config.
MESSAGE_CONFIG = "message config"
RUN_CONFIG = "run_config"
#: Field metadata key naming the only sources a field reads (:func:`only_from`).
SOURCES_METADATA = "vane-sources"

Settings = TypeVar("Settings")
Source = tuple[str, Mapping[str, Any]]


def mix_metric_key(candidate: int, metric: str) -> str:
    """Evaluate-metric key of blend candidate ``candidate``'s mean ``metric`` (``"hr@1"`` or ``"mrr"``)."""
    return f"mix-{candidate}-{metric}"


def setting_key(field_name: str) -> str:
    """The kebab-case key of a settings field: ``local_epochs`` → ``local-epochs``."""
    return field_name.replace("_", "-")


def only_from(*sources: str) -> dict[str, tuple[str, ...]]:
    """Field metadata: the field reads only ``sources``.

    Example: ``proximal_mu: float = field(default=0.0, metadata=only_from(MESSAGE_CONFIG))``.
    """
    return {SOURCES_METADATA: sources}


def settings_values(settings_class: type[Any], *sources: Source) -> dict[str, Any]:
    """The fields of ``settings_class`` that ``sources`` hold, coerced to the type of each field's default.

    Parameters
    ----------
    settings_class : type
        A dataclass whose fields all have defaults; the key of a field is :func:`setting_key` of its name.
    *sources : (name, mapping)
        In precedence order: the first source holding a key gives its value. Keys that are not
        fields are ignored (the other side reads them).

    Returns
    -------
    dict
        Field name → value for the fields found; absent fields are left to the defaults.

    Raises
    ------
    ConfigError
        When a value cannot be read as its field's type.
    """
    if not is_dataclass(settings_class):
        raise TypeError(f"settings_class must be a dataclass; got {settings_class!r}")
    defaults = settings_class()
    values: dict[str, Any] = {}
    for f in fields(settings_class):
        key = setting_key(f.name)
        allowed = f.metadata.get(SOURCES_METADATA)
        for name, source in sources:
            if (allowed is None or name in allowed) and key in source:
                values[f.name] = coerce_setting(name, key, source[key], type(getattr(defaults, f.name)))
                break
    return values


def read_settings(settings_class: type[Settings], *sources: Source) -> Settings:
    """``settings_class`` built from ``sources`` (see :func:`settings_values`); its ``__post_init__`` validates."""
    return settings_class(**settings_values(settings_class, *sources))


def to_config(settings: Any) -> dict[str, Any]:
    """A settings dataclass as kebab-case keys (what :func:`read_settings` reads back)."""
    return {setting_key(f.name): getattr(settings, f.name) for f in fields(settings)}


_TRUE = ("true", "1", "yes")
_FALSE = ("false", "0", "no")


def coerce_setting(source: str, key: str, value: Any, kind: type) -> Any:
    """``value`` as ``kind`` (bool, int, float or str) under the module's rules; raise ConfigError otherwise."""
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in _TRUE + _FALSE:
            return value.lower() in _TRUE
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        expected = "a boolean (true/false, 1/0 or yes/no)"
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        expected = "an integer"
    elif kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
        expected = "a finite number"
    elif kind is str:
        if isinstance(value, str):
            return value
        expected = "a string"
    else:
        raise TypeError(f"settings field {key!r} has a default of type {kind.__name__}; "
                        "expected bool, int, float or str")
    raise ConfigError(f"{source} {key} is {value!r}; expected {expected}")
