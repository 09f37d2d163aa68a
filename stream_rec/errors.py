"""The exception tree of stream-rec.

::

    StreamRecError                  base class: catch this to catch everything of ours
     ├── InvalidEvent               an input event broke the contract (goes to the dead-letter topic)
     ├── DatasetError               a dataset file could not be read in the format asked for
     ├── CheckpointError            a checkpoint is missing, corrupt or of another model
     ├── SettingsMismatch           a checkpoint's model was made with settings that shape it otherwise
     └── BrokerError                the local Kafka broker could not be installed, started or reached
          ├── BrokerUnreachable     no broker answers at the configured address (exit code 3)
          └── BrokerRefused         the broker refuses our credentials or our TLS handshake
"""

from __future__ import annotations

__all__ = [
    "BrokerError", "BrokerRefused", "BrokerUnreachable", "CheckpointError", "DatasetError", "InvalidEvent",
    "SettingsMismatch", "StreamRecError",
]  # fmt: skip


class StreamRecError(Exception):
    """Base class of every error stream-rec raises on purpose."""


class InvalidEvent(StreamRecError):
    """An event that breaks the wire contract of DESIGN.md; ``reason`` says how, in words a producer can act on."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class DatasetError(StreamRecError):
    """A dataset file that cannot be read in the format asked for."""


class CheckpointError(StreamRecError):
    """A checkpoint that cannot be loaded."""


class SettingsMismatch(StreamRecError):
    """A checkpoint whose model was made with settings that shape its state otherwise than the configured ones
    (not damage: the file is sound, and it is left where it is)."""


class BrokerError(StreamRecError):
    """The local Kafka broker could not be installed, started, stopped or reached."""


class BrokerUnreachable(BrokerError):
    """No Kafka broker answers at the address a command needs."""

    def __init__(self, address: str) -> None:
        super().__init__(
            f"no Kafka broker answers at {address}: start the local one with `stream-rec kafka start`, or point "
            "STREAM_REC_BROKER (or --broker) at yours"
        )
        self.address = address


class BrokerRefused(BrokerError):
    """The broker answers but refuses the client: wrong SASL credentials or mechanism, or a TLS handshake that
    fails (an unknown certificate authority, a certificate it does not accept)."""

    def __init__(self, address: str, reason: BaseException) -> None:
        if "[SSL" in str(reason):
            fix = (
                "check STREAM_REC_SECURITY__CA_FILE (the authority that signed the broker's certificate), and "
                "__CERT_FILE/__KEY_FILE where the broker asks for a client certificate"
            )
            what = "the TLS handshake"
        else:
            fix = "check STREAM_REC_SECURITY__USERNAME, __PASSWORD and __SASL_MECHANISM"
            what = "the credentials"
        detail = str(reason)
        detail = detail[detail.index("[SSL") :] if "[SSL" in detail else detail.rsplit("Error: ", 1)[-1]
        super().__init__(f"the Kafka broker at {address} refused {what} ({detail}); {fix}")
        self.address = address
