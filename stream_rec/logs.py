"""Logs a person can read through an outage: the Kafka clients' repeated complaints, once every few seconds.

While its broker is away, aiokafka logs every failed connect, metadata update and fetch: about 50,000 ERROR lines
in a 43 s outage. :class:`Throttle` lets one record of each kind (logger and message template) through every
``every`` seconds and says how many like it it held back.

>>> import logging
>>> clock = iter([0.0, 1.0, 2.0, 6.0]).__next__
>>> t = Throttle(every=5.0, clock=clock)
>>> records = [logging.LogRecord("aiokafka", 40, "", 0, "Unable connect to node %s", (1,), None) for _ in range(4)]
>>> [t.filter(r) for r in records]
[True, False, False, True]
>>> records[3].getMessage()
'Unable connect to node 1 (and 2 more like it in the last 6 s)'
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .settings import Settings

__all__ = ["Throttle", "configure_logging", "quiet_kafka_python", "throttle_client_logs"]

CLIENT_LOGGERS = ("aiokafka", "kafka")  # the Kafka clients' loggers and their children


class Throttle(logging.Filter):
    """Passes the first record of each (logger, template) per ``every`` seconds; counts the others."""

    def __init__(self, every: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.every, self.clock = every, clock
        self._seen: dict[tuple[str, object], tuple[float, int]] = {}  # key -> (when last passed, held back since)
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key, now = (record.name, record.msg), self.clock()
        with self._lock:
            passed, held = self._seen.get(key, (-float("inf"), 0))
            if now - passed < self.every:
                self._seen[key] = (passed, held + 1)
                return False
            self._seen[key] = (now, 0)
        if held:
            record.msg = f"{record.msg} (and {held} more like it in the last {now - passed:.0f} s)"
        return True


def throttle_client_logs(every: float = 5.0) -> Throttle:
    """Throttle the warnings and errors of every Kafka client logger there is now (import the clients first)."""
    throttle = Throttle(every)
    names = [n for n in logging.root.manager.loggerDict if n.split(".")[0] in CLIENT_LOGGERS]
    for name in {*CLIENT_LOGGERS, *names}:
        logging.getLogger(name).addFilter(throttle)
    return throttle


def configure_logging(settings: Settings) -> None:
    """The worker's log from its first line (Faust sets up its own logging only once it starts), and its
    learning process's, each line with its process id."""
    logging.basicConfig(
        level=settings.log_level.upper(), format="[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s",
        stream=sys.stderr, force=True,
    )  # fmt: skip


class _NotForPeople(logging.Filter):
    """Drops kafka-python's notes on its own event loop ("Task ... ran for 0.274s ... It is blocking the event
    loop"): they say how long one of its tasks held its thread, which nobody running stream-rec can act on."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Task %r ran for")


def quiet_kafka_python(level: int = logging.WARNING) -> None:
    """kafka-python (the command line's producer and consumer, the trainer, topic creation) says only what a person
    can act on: warnings and errors, without its event loop's timing notes."""
    logging.getLogger("kafka").setLevel(level)
    logging.getLogger("kafka.net.selector").addFilter(_NotForPeople())
