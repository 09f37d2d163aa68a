"""The Kafka clients' repeated complaints during an outage: one per kind every few seconds, the rest counted."""

from __future__ import annotations

import logging

import pytest

from stream_rec.logs import Throttle, quiet_kafka_python, throttle_client_logs


def record(msg: str, level: int = logging.ERROR, name: str = "aiokafka.conn") -> logging.LogRecord:
    return logging.LogRecord(name, level, "", 0, msg, (7,), None)


def test_each_kind_passes_once_per_interval_and_says_how_many_it_held_back() -> None:
    now = [0.0]
    throttle = Throttle(every=5.0, clock=lambda: now[0])
    passed = []
    for t in range(0, 120):  # 12 s: ten complaints a second of two kinds
        now[0] = t / 10
        for msg in ("Unable connect to node %s", "Unable to update metadata from %s"):
            r = record(msg)
            if throttle.filter(r):
                passed.append((now[0], r.getMessage()))
    assert [t for t, _ in passed] == [0.0, 0.0, 5.0, 5.0, 10.0, 10.0]
    assert passed[2][1] == "Unable connect to node 7 (and 49 more like it in the last 5 s)"
    info = record("Connected %s", level=logging.INFO)
    assert throttle.filter(info) and throttle.filter(record("Connected %s", level=logging.INFO)), "info passes"


def test_the_client_loggers_are_throttled(caplog: pytest.LogCaptureFixture) -> None:
    import aiokafka  # noqa: F401  (its loggers exist once it is imported)

    throttle = throttle_client_logs(every=60.0)
    try:
        log = logging.getLogger("aiokafka.conn")
        with caplog.at_level(logging.ERROR, logger="aiokafka"):
            for _ in range(100):
                log.error("Unable connect to node %s", 1)
        assert len([r for r in caplog.records if r.name == "aiokafka.conn"]) == 1
    finally:
        for name in logging.root.manager.loggerDict:
            logging.getLogger(name).removeFilter(throttle)
        logging.getLogger("aiokafka").removeFilter(throttle)
        logging.getLogger("kafka").removeFilter(throttle)


def test_kafka_python_says_only_what_a_person_can_act_on() -> None:
    quiet_kafka_python()
    selector = logging.getLogger("kafka.net.selector")
    timing = logging.LogRecord(selector.name, logging.WARNING, "", 0, "Task %r ran for %.3fs (>%.3fs threshold).",
                               ("t", 0.274, 0.1), None)  # fmt: skip
    lost = logging.LogRecord(selector.name, logging.WARNING, "", 0, "Connection to %s lost", ("b",), None)
    assert [selector.filter(timing), bool(selector.filter(lost))] == [False, True]
    assert not logging.getLogger("kafka.coordinator").isEnabledFor(logging.INFO), "its group chatter is not shown"
