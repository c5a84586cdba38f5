"""Shared, cached simulation runs of the privacy tests (one audit = one plain round + one SecAgg+ round)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

AUDIT_USERS = 6
DROPOUT_PARTITION = 2


@lru_cache(maxsize=1)
def audit_report(root: str) -> tuple[dict, Path]:
    """run_audit over 6 users; partition 2 drops out of SecAgg+ after key sharing. Cached per process."""
    from vane.simulations.audit import AuditConfig, run_audit

    out = Path(root) / "audit"
    report = run_audit(out, AuditConfig(users=AUDIT_USERS, secagg_dropout=DROPOUT_PARTITION))
    return report, out


def as_flower_task(monkeypatch) -> None:
    """Let a test build Flower Messages outside a Flower runtime (they read the task identity)."""
    from flwr.supercore.task_identity import TaskIdentity

    for name in ("_task_id", "_run_id", "_node_id"):
        monkeypatch.setattr(TaskIdentity, name, 1)
