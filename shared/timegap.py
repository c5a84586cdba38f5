"""Log-scale buckets for the time between consecutive events."""

from __future__ import annotations

import math


def gap_bucket(gap_s: float | None, buckets: int) -> int:
    """Bucket of the gap since the previous event.

    0 means "no previous event". Otherwise bucket ``1 + floor(log2(1 + gap))``,
    capped at ``buckets - 1``: 1 is under a second, 2 about a second, …, 11 about
    17 minutes, 17 about a day. Negative gaps (clock skew) count as zero.
    """
    if buckets < 2:
        raise ValueError(f"buckets is {buckets}; expected at least 2")
    if gap_s is None:
        return 0
    gap = max(0.0, float(gap_s))
    return min(buckets - 1, 1 + int(math.log2(1.0 + gap)))
