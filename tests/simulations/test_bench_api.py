"""``vane sim bench api`` runs end to end on a small store: every request recorded, each figure printed."""

from __future__ import annotations

import pytest
from vane.simulations.bench.api import TARGETS, print_report, run_api_bench


def test_the_api_benchmark_records_every_request_and_reports_each_figure(capsys: pytest.CaptureFixture[str]) -> None:
    result = run_api_bench(events=300, rate=40.0, seconds=1.0)
    assert result.errors == 0 and len(result.latencies_ms) == 40 == len(result.lags_ms)
    assert all(lat > 0 for lat in result.latencies_ms)
    assert set(result.rss_mb) == {"after recording", "after answering", "peak"}
    assert 10 < result.rss_mb["after answering"] <= result.rss_mb["peak"]
    print_report(result)
    shown = capsys.readouterr().out
    assert "300 stored events" in shown and "40 requests, 0 failed" in shown
    for name in TARGETS:
        assert name in shown
