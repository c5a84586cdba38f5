"""``vane sim audit-privacy``: what crosses the wire, and what a curious server can learn from it.

Three parts, written to ``OUT/audit.json`` and ``OUT/audit.md``:

- **Message audit** (:mod:`~vane.simulations.audit.messages`): every message a device receives and every
  reply it sends is recorded and searched for the users' own strings (item ids, titles, category names,
  timestamps). Any finding fails the audit (:class:`PrivacyLeakError`).
- **Item-set leakage attack** (:mod:`~vane.simulations.audit.attack`): an honest-but-curious server guesses
  which hashed item buckets and categories each client touched from what it sees, under plain FedAvg,
  central DP, device noise and SecAgg+, against a popularity guess.
- **Utility vs privacy** (:mod:`~vane.simulations.audit.utility`): HR@5 and NDCG@10 of the federated model
  at several noise multipliers, next to the ε each reaches.

:mod:`~vane.simulations.audit.runs` runs the federations of the first two parts (:func:`run_audit`);
:mod:`~vane.simulations.audit.report` writes the report.
"""

from vane.simulations.audit.messages import Needles, PrivacyLeakError, check_messages, summarise_messages
from vane.simulations.audit.report import markdown_table, write_report
from vane.simulations.audit.runs import AuditConfig, run_audit
from vane.simulations.audit.utility import UtilityConfig, run_utility

__all__ = [
    "AuditConfig",
    "Needles",
    "PrivacyLeakError",
    "UtilityConfig",
    "check_messages",
    "markdown_table",
    "run_audit",
    "run_utility",
    "summarise_messages",
    "write_report",
]
