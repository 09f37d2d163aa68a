"""`stream-rec bench` on a small N through the real broker: every figure is there and consistent.

The figures are printed, never asserted against time: this machine's speed is not what is tested.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from stream_rec.cli import main

pytestmark = pytest.mark.kafka


def test_bench_times_the_worker_and_the_ceiling(
    broker: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Also: the synthetic catalogue is loaded into the worker's model as it starts, and (forced on here, at
    3,000 items) the worker ranks from an approximate index."""
    monkeypatch.setenv("STREAM_REC_RETRIEVAL__MODE", "index")
    monkeypatch.setenv("STREAM_REC_RETRIEVAL__REBUILD_EVERY", "2")
    out = tmp_path / "bench.json"
    argv = ["--broker", broker, "bench", "--synthetic", "400", "--items", "3000", "--warmup", "50", "--json", str(out)]
    before = _bench_topics(broker)
    assert main(argv) == 0
    assert _bench_topics(broker) <= before, "bench deletes the topics it created"
    printed = " ".join(capsys.readouterr().out.split())  # as read, whatever the console's wrapping
    report = orjson.loads(out.read_bytes())
    with capsys.disabled():
        print("\nbench figures (small N, not a benchmark):", {k: v for k, v in report.items() if k != "machine"})
    assert report["events"] == 400 and report["warmup"] == 50
    for prefix in ("", "ceiling_"):
        assert report[f"{prefix}events_per_s"] > 0
        assert 0 < report[f"{prefix}p50_ms"] <= report[f"{prefix}p99_ms"] <= report[f"{prefix}max_ms"]
        assert report[f"{prefix}cpu_s"] > 0 and report[f"{prefix}peak_rss_mb"] > 0
    assert report["ratio"] == pytest.approx(report["events_per_s"] / report["ceiling_events_per_s"], rel=1e-3)
    assert 0 < report["freshness_p50_ms"] <= report["freshness_p99_ms"], "the worker measured model freshness"
    assert isinstance(report["learn_dropped"], int) and "ceiling_freshness_p50_ms" not in report
    assert report["catalogue_items"] >= 3000, "the catalogue was loaded, not only the items of the 450 events"
    assert report["ranking"] == "index" and report["index_build_s"] > 0
    # The latency split in two at the worker's published_ts: both parts positive, the way in the larger median.
    assert 0 < report["published_p50_ms"] <= report["published_p99_ms"] <= report["max_ms"]
    assert 0 < report["delivered_p50_ms"] <= report["delivered_p99_ms"] <= report["max_ms"]
    assert report["published_p50_ms"] + report["delivered_p50_ms"] <= report["max_ms"]
    assert "ceiling_published_p50_ms" not in report and "produced to published" in printed
    assert "worker / ceiling throughput" in printed and "ceiling" in printed and "model freshness" in printed


def _bench_topics(broker: str) -> set[str]:
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=broker)
    try:
        return {name for name in admin.list_topics() if "bench-worker-" in name or "bench-ceiling-" in name}
    finally:
        admin.close()
