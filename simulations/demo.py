"""The main job, ``make demo``."""

from __future__ import annotations

import sys


def run_demo() -> int:
    """Run the demo; returns the process exit code."""
    print(
        "vane demo: the federated demo is not built yet (see the federation issue). Nothing was run.",
        file=sys.stderr,
    )
    return 1
