"""The contract between the device and the server: numpy and the standard library only."""

from vane.shared.errors import (
    ConfigError,
    DatasetError,
    EventValidationError,
    HistoryImportError,
    KeyFileError,
    ModelError,
    PrivacyConfigError,
    SpecError,
    SpecMismatchError,
    StoreError,
    StoreIntegrityError,
    TaxonomyError,
    VaneError,
    WeightsError,
)
from vane.shared.events import KINDS, OTHER, Event
from vane.shared.features import Featurizer, Features, TrainingBatch
from vane.shared.spec import ModelSpec
from vane.shared.taxonomy import Taxonomy
from vane.shared.weights import Weights, num_weights, weight_layout

__all__ = [
    "ConfigError",
    "DatasetError",
    "Event",
    "EventValidationError",
    "Featurizer",
    "Features",
    "HistoryImportError",
    "KINDS",
    "KeyFileError",
    "ModelError",
    "ModelSpec",
    "OTHER",
    "PrivacyConfigError",
    "SpecError",
    "SpecMismatchError",
    "StoreError",
    "StoreIntegrityError",
    "Taxonomy",
    "TaxonomyError",
    "TrainingBatch",
    "VaneError",
    "Weights",
    "num_weights",
    "weight_layout",
]
