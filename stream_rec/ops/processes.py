"""Child processes with the parent's settings: the worker (``stream-rec demo``, ``stream-rec bench``) and the
bench's ceiling. One place for the environment that carries settings across, the start and the stop, and for
the settings of a run of its own (``isolated``); and the lock by which a worker holds its data folder
(``hold_data_dir``), light to import so that a second worker on a folder is told at once."""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

from ..errors import StreamRecError
from ..settings import ModelSettings, Retrieval, Settings

__all__ = ["free_port", "hold_data_dir", "isolated", "start", "stop_process", "worker_env"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def isolated(settings: Settings, name: str, folder: Path, *, web_port: int | None = None) -> Settings:
    """``settings`` with topics, consumer group and state folder of their own, for one run (``<name>-<8 hex>``,
    the state in ``folder``), and a free web port unless ``web_port`` is given."""
    run = f"{name}-{uuid.uuid4().hex[:8]}"
    return settings.model_copy(
        update={
            "app_id": f"{settings.app_id}-{run}",
            "topic_events": f"{run}-events",
            "topic_recommendations": f"{run}-recommendations",
            "topic_embeddings": f"{run}-user-embeddings",
            "topic_dlq": f"{run}-events-dlq",
            "topic_control": f"{run}-control",
            "data_dir": folder / run,
            "web_port": web_port or free_port(),
        }
    )


def worker_env(settings: Settings) -> dict[str, str]:
    """The environment that gives a child process exactly these settings: every one written out, the model's as
    ``STREAM_REC_MODEL__*``, over whatever the parent's environment or settings file said."""
    env = dict(os.environ)
    fields = [
        (f"STREAM_REC_{name.upper()}", getattr(settings, name))
        for name in Settings.model_fields
        if name not in ("model", "security", "retrieval")
    ]
    fields += [
        (f"STREAM_REC_MODEL__{name.upper()}", getattr(settings.model, name)) for name in ModelSettings.model_fields
    ]
    fields += [
        (f"STREAM_REC_RETRIEVAL__{name.upper()}", getattr(settings.retrieval, name)) for name in Retrieval.model_fields
    ]
    for key, value in fields:
        if value is None:
            env.pop(key, None)
        else:
            env[key] = str(value).lower() if isinstance(value, bool) else str(value)
    for key in [key for key in env if key.startswith("STREAM_REC_SECURITY__")]:
        del env[key]
    return env | settings.security.env()


def start(module: str, settings: Settings, log_path: Path, *args: str) -> subprocess.Popen[bytes]:
    """``python -m module *args`` with ``settings``, its output appended to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", module, *args], env=worker_env(settings), stdout=log, stderr=subprocess.STDOUT
        )


def trainer_beside(settings: Settings) -> subprocess.Popen[bytes]:
    """``stream-rec trainer`` as a child of this worker (learn_in = kafka, no trainer elsewhere), with the same
    settings and its state in ``<data dir>/trainer``, its view on the next port (``web_port + 1``), its output
    with the worker's. It is sent SIGTERM when the
    worker's process ends, however it ends (Linux's parent-death signal), and then checkpoints and stops."""
    import ctypes
    import signal as signals

    def die_with_parent() -> None:
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signals.SIGTERM)  # PR_SET_PDEATHSIG

    trainer = settings.model_copy(
        update={"data_dir": settings.worker_dir / "trainer", "web_port": settings.web_port + 1}
    )
    return subprocess.Popen(
        [sys.executable, "-m", "stream_rec", "trainer"], env=worker_env(trainer), preexec_fn=die_with_parent
    )


def stop_process(worker: subprocess.Popen[bytes]) -> None:
    """Terminate a child process (SIGTERM, then SIGKILL after 30 s) and reap it."""
    if worker.poll() is None:
        worker.terminate()
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


@contextlib.contextmanager
def hold_data_dir(settings: Settings) -> Iterator[None]:
    """Hold the worker's data folder for this process; a second worker on it is a clear error.

    RocksDB locks its files too, but Faust retries on the lock forever, stalling the partition.
    """
    folder = settings.worker_dir
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "worker.lock"
    with path.open("a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            pid = fh.read().strip() or "?"
            raise StreamRecError(
                f"another worker (pid {pid}) is using {folder}; give each worker a data folder of its own "
                "(--data-dir or STREAM_REC_DATA_DIR)"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
