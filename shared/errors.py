"""The one exception tree of Vane.

::

    VaneError
    ├── EventValidationError      an event field is missing or malformed
    ├── TaxonomyError             a taxonomy file or category list is unusable
    ├── SpecError                 a ModelSpec is invalid
    │   └── SpecMismatchError     weights, models or states built for another spec
    ├── WeightsError              a weight vector or file cannot be decoded
    ├── ConfigError               a run_config / node_config / CLI value is invalid
    │   ├── MessageError          a federation message lacks a record or holds a malformed value
    │   └── PrivacyConfigError    a DP or SecAgg+ setting makes no sense
    ├── ModelError                a LiteRT model cannot be loaded or called
    ├── StoreError                the encrypted store cannot be used
    │   ├── StoreIntegrityError   opaque: wrong key, tampered or truncated data
    │   ├── StoreInUseError       another process has the store open
    │   └── KeyFileError          a key file is missing, unsafe or malformed
    ├── HistoryImportError        a browser history file cannot be imported
    └── DatasetError              a dataset file is missing or malformed
"""

from __future__ import annotations


class VaneError(Exception):
    """Root of every error Vane raises on purpose."""


class EventValidationError(VaneError, ValueError):
    """An event field is missing or has a value of the wrong kind."""

    def __init__(self, field: str, value: object, expected: str) -> None:
        self.field = field
        self.value = value
        self.expected = expected
        shown = repr(value)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        super().__init__(f"event field {field!r} is {shown}; expected {expected}")


class TaxonomyError(VaneError, ValueError):
    """A taxonomy cannot be built or loaded."""


class SpecError(VaneError, ValueError):
    """A ModelSpec field is invalid."""


class SpecMismatchError(SpecError):
    """Something built for one ModelSpec was given to another."""


class WeightsError(VaneError, ValueError):
    """A weight vector or weight file is malformed."""


class ConfigError(VaneError, ValueError):
    """A configuration value is invalid."""


class MessageError(ConfigError):
    """A federation message lacks a record or key, or holds a value of the wrong type, shape or range."""


class PrivacyConfigError(ConfigError):
    """A differential-privacy or secure-aggregation setting is invalid."""


class ModelError(VaneError):
    """A LiteRT model cannot be loaded or called."""


class StoreError(VaneError):
    """The encrypted event store cannot be used."""


class StoreIntegrityError(StoreError):
    """The store failed authentication.

    Deliberately opaque: a wrong key, a tampered record and a truncated file
    all raise this one error with the same message, so that the error itself
    tells an attacker nothing about which check failed.
    """

    def __init__(self) -> None:
        super().__init__("the store could not be authenticated: wrong key, or damaged data")


class StoreInUseError(StoreError):
    """Another process (its PID in the message and in :attr:`pid`) has the store open for writing."""

    def __init__(self, path: str, pid: int | None) -> None:
        self.path = path
        self.pid = pid
        who = f"PID {pid}" if pid is not None else "another process"
        super().__init__(f"store {path!r} is in use by {who}; close it there (or ask that app to do this) "
                         "and retry")


class KeyFileError(StoreError):
    """A key file is missing, unsafe to use, or malformed."""


class HistoryImportError(VaneError):
    """A browser history database cannot be imported."""


class DatasetError(VaneError):
    """A dataset file is missing or malformed."""
