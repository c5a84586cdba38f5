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
from vane.shared.features import Features, Featurizer, TrainingBatch
from vane.shared.spec import ModelSpec
from vane.shared.taxonomy import Taxonomy
from vane.shared.weights import Weights, num_weights, weight_layout

__all__ = [
    "KINDS",
    "OTHER",
    "ConfigError",
    "DatasetError",
    "Event",
    "EventValidationError",
    "Features",
    "Featurizer",
    "HistoryImportError",
    "KeyFileError",
    "ModelError",
    "ModelSpec",
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
    "WeightsError",
    "num_weights",
    "weight_layout",
]
