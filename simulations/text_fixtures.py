"""The share of real browser visits left ``other``: older coarse rules, Topics site rules, rules + the encoder.

The visits are the browser-history fixtures (``../shared/datasets/browser-history-fixtures``: Chrome,
Firefox and Safari files from forensic tools' test data), read by :func:`vane.client.history.read_history`
from copies (opening the Safari file writes sidecars). ``rules + encoder`` gives each titled visit no
rule knows the categoriser's topics (:func:`vane.client.categorize_store.fill_other`: with no trained head,
the zero-shot prior), as an import into a store with the encoder does.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

FIXTURE_DIR = "browser-history-fixtures"
FILES = ("grr/chrome_History2", "grr/chrome_History3", "plaso/chrome_History", "plaso/chrome_History-59.0.3071.86",
         "plaso/firefox_places.sqlite", "plaso/safari_History.db", "pyspark-plaso/chrome_History_demo-2019-09")


def fixture_other_shares(data_root: str | Path, encoder: Any) -> dict[str, Any]:
    """``{"visits", "other_older_rules", "other_topics_rules", "other_rules_and_encoder"}`` (shares in [0, 1]),
    or ``{"skipped": reason}`` when the fixtures are not there."""
    from vane.client.categorize import Categorizer
    from vane.client.categorize_store import fill_other
    from vane.client.history import load_rules, read_history
    from vane.shared.events import OTHER

    root = Path(data_root) / FIXTURE_DIR
    if not all((root / name).is_file() for name in FILES):
        return {"skipped": f"the browser-history fixtures are not under {root}"}
    with tempfile.TemporaryDirectory(prefix="vane-fixtures-") as tmp:
        copies = []
        for name in FILES:
            target = Path(tmp) / name.replace("/", "__")
            shutil.copyfile(root / name, target)
            copies.append(target)
        older = [e for f in copies for e in read_history(f, rules=load_rules()).events]
        topics = [e for f in copies for e in read_history(f).events]
    with_encoder = fill_other(Categorizer(encoder=encoder), topics)

    def share(events: list[Any]) -> float:
        return sum(e.categories == (OTHER,) for e in events) / max(1, len(events))

    return {"visits": len(topics), "other_older_rules": share(older), "other_topics_rules": share(topics),
            "other_rules_and_encoder": share(with_encoder),
            "untitled_other": sum(e.categories == (OTHER,) and not e.title for e in with_encoder)}
