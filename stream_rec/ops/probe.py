"""Whether a Kafka broker answers: one metadata request, with the cluster's security, and the reason where the
broker refuses the client (kafka-python only logs it, then retries until its bootstrap times out)."""

from __future__ import annotations

import contextlib
import logging
import socket

from ..errors import BrokerRefused
from ..security import Security

__all__ = ["PROBE_TIMEOUT", "is_up"]

# Seconds a command gives a broker to answer its first request: a closed port fails at once, but TLS and SASL
# handshakes on a busy machine took more than 3 s.
PROBE_TIMEOUT = 10.0


def is_up(address: str, timeout: float = 2.0, security: Security | None = None) -> bool:
    """Whether a Kafka broker answers a metadata request at ``address`` (host:port) within ~``timeout`` s, reached
    with ``security`` (plain text where None).

    A TCP connect comes first, so that a closed port costs nothing and kafka-python does not log connection
    errors; then a real metadata request, because an open port may be another program, or a broker that has
    bound its socket but not yet joined its (KRaft) cluster. A broker that refuses the credentials or the TLS
    handshake raises :class:`BrokerRefused`: waiting would not change its answer.
    """
    host, _, port = address.split(",")[0].strip().rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except (OSError, ValueError):
        return False
    # A port that accepts but a broker that does not answer in time is asked again once: a busy machine's TLS and
    # SASL handshakes took longer than the timeout, and the second answer is the one to act on (a refusal).
    return _answers(address, timeout, security) or _answers(address, timeout, security)


def _answers(address: str, timeout: float, security: Security | None) -> bool:
    """One metadata request (see :func:`is_up`)."""
    from kafka import KafkaConsumer

    ms = max(int(timeout * 1000), 500)
    # request_timeout_ms must exceed fetch_max_wait_ms (kafka-python checks), hence the explicit small wait
    config: dict[str, object] = {
        "bootstrap_servers": address,
        "request_timeout_ms": ms + 100,
        "fetch_max_wait_ms": 100,
        **(security.kafka_python() if security is not None else {}),
    }
    # kafka-python 3 renamed the bootstrap timeout; 2.x calls it api_version_auto_timeout_ms.
    key = (
        "bootstrap_timeout_ms"
        if "bootstrap_timeout_ms" in KafkaConsumer.DEFAULT_CONFIG
        else "api_version_auto_timeout_ms"
    )
    config[key] = ms
    kafka_log = logging.getLogger("kafka")
    level, propagate = kafka_log.level, kafka_log.propagate
    # A failed probe is an answer, not an error worth logging: kafka-python's errors go to the refusals alone.
    kafka_log.setLevel(logging.ERROR)
    kafka_log.propagate = False
    refusals = _Refusals()
    kafka_log.addHandler(refusals)
    consumer = None
    try:
        consumer = KafkaConsumer(**config)
        consumer.topics()
        return True
    except Exception:  # any failure of the probe means "not answering"; the caller decides what that means
        if refusals.seen is not None:
            raise BrokerRefused(address, refusals.seen) from None
        return False
    finally:
        kafka_log.removeHandler(refusals)
        if consumer is not None:
            with contextlib.suppress(Exception):
                consumer.close()
        kafka_log.setLevel(level)
        kafka_log.propagate = propagate


class _Refusals(logging.Handler):
    """Keeps the reason kafka-python gives for a connection the broker refused (it only logs it, then retries
    until its bootstrap times out with a generic error)."""

    seen: BaseException | None = None

    def emit(self, record: logging.LogRecord) -> None:
        from kafka.errors import AuthorizationError, KafkaConnectionError, SaslAuthenticationFailedError

        for arg in record.args if isinstance(record.args, tuple) else ():
            refused = isinstance(arg, SaslAuthenticationFailedError | AuthorizationError)
            handshake = isinstance(arg, KafkaConnectionError) and "[SSL" in str(arg)  # refused by either side
            if isinstance(arg, BaseException) and (refused or handshake):
                self.seen = arg
