"""The exception tree of stream-rec.

::

    StreamRecError                  base class: catch this to catch everything of ours
     ├── InvalidEvent               an input event broke the contract (goes to the dead-letter topic)
     ├── DatasetError               a dataset file could not be read in the format asked for
     ├── CheckpointError            a checkpoint is missing, corrupt or of another model
     ├── SettingsMismatch           a checkpoint's model was made with settings that shape it otherwise
     └── BrokerError                the local Kafka broker could not be installed, started or reached
          └── BrokerUnreachable     no broker answers at the configured address (exit code 3)
"""

from __future__ import annotations

__all__ = [
    "BrokerError", "BrokerUnreachable", "CheckpointError", "DatasetError", "InvalidEvent", "SettingsMismatch",
    "StreamRecError",
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
