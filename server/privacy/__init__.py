"""Privacy of the model updates: client-level differential privacy and secure aggregation.

- :mod:`~vane.server.privacy.accounting`: ε per round (RDP) and the budget ledger;
- :mod:`~vane.server.privacy.wrappers`: Flower's DP strategy wrappers adapted to deltas, :func:`apply_privacy`;
- :mod:`~vane.server.privacy.secagg`: SecAgg+ on Flower's legacy workflow, with optional central DP.

The settings (:class:`~vane.server.config.PrivacySettings`, :class:`~vane.server.config.SecAggSettings`)
live with the other run_config settings in :mod:`vane.server.config`.
"""

from vane.server.privacy.accounting import PrivacyLedger, ReleaseAccounting, record_release, sampled_clients
from vane.server.privacy.secagg import SecAggDeltaFedAvg, SecAggNoise, run_secure
from vane.server.privacy.wrappers import CLIP_STATE_KEY, DeltaPrivacy, apply_privacy, budget_ledger, wrap_with_dp

__all__ = [
    "CLIP_STATE_KEY",
    "DeltaPrivacy",
    "PrivacyLedger",
    "ReleaseAccounting",
    "SecAggDeltaFedAvg",
    "SecAggNoise",
    "apply_privacy",
    "budget_ledger",
    "record_release",
    "run_secure",
    "sampled_clients",
    "wrap_with_dp",
]
