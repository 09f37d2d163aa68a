"""A local single-node Apache Kafka broker (KRaft), installed from Maven Central and run with ``java``.

Why not Docker: the machines stream-rec is built and tested on have a JDK and Maven but no container engine,
and a laptop user should be able to run ``stream-rec demo`` with nothing else installed. :func:`install`
(kafka_install.py) fetches the jars; :func:`start` writes a one-node broker+controller configuration under
``<home>/broker``, formats the storage once and runs ``kafka.Kafka`` detached; :func:`stop` sends SIGTERM
(Kafka's clean shutdown); :func:`status` reports.

Layout under ``Settings().home``::

    kafka/<version>/libs/*.jar      the broker's class path (``.installed`` marks a complete fetch)
    broker/server.properties        written at every start from ``settings.bootstrap``
    broker/log4j.properties
    broker/data/                    log.dirs (topics and the KRaft metadata log); formatted once
    broker/server.log               the broker's own log
    broker/stdout.log               the JVM's stdout/stderr (start-up crashes land here)
    broker/broker.pid               pid of the broker this home started
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from ..errors import BrokerError
from ..settings import Settings
from .kafka_install import MARKER, TAIL_LINES, home, install, libs_dir, locked, read_tail, require
from .probe import is_up

__all__ = ["ONE_NODE", "BrokerStatus", "install", "start", "status", "stop"]

log = logging.getLogger(__name__)

_JVM_FLAGS = (
    "-Xms256m", "-Xmx512m", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:+ExplicitGCInvokesConcurrent", "-Djava.awt.headless=true",
)  # fmt: skip
# Popen objects of brokers this process started, kept so that they are reaped (no zombie) and so that Python
# does not warn "subprocess is still running" when the object would otherwise be garbage collected.
_children: dict[int, subprocess.Popen[bytes]] = {}


@dataclass(frozen=True)
class BrokerStatus:
    """What is known about the local broker at ``address``.

    ``pid`` is set only when the broker was started from this home and its process is alive; a broker that
    answers with ``pid=None`` belongs to someone else (another home, Docker, a system service).
    """

    running: bool
    address: str
    pid: int | None
    log: Path
    version: str
    installed: bool
    already_running: bool = False

    def describe(self) -> str:
        """One line for humans (the CLI prints it)."""
        state = "running" if self.running else "not running"
        owner = f", pid {self.pid}" if self.pid is not None else (", not ours" if self.running else "")
        extra = " (was already running)" if self.already_running else ""
        inst = "installed" if self.installed else "not installed"
        return f"Kafka {self.version} on {self.address}: {state}{owner}{extra}; {inst}; log {self.log}"


# ---------------------------------------------------------------------------------------------- paths


def _broker_dir(settings: Settings) -> Path:
    return home(settings) / "broker"


def _pid_file(settings: Settings) -> Path:
    return _broker_dir(settings) / "broker.pid"


def _server_log(settings: Settings) -> Path:
    return _broker_dir(settings) / "server.log"


def _address(settings: Settings) -> tuple[str, int]:
    """The first host:port of ``settings.bootstrap``: where the local broker listens (controller: port+1)."""
    first = settings.bootstrap.split(",")[0].strip()
    host, sep, port = first.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65535:
        raise BrokerError(f"broker address {first!r} is not host:port (port below 65535, the controller takes +1)")
    return host.strip("[]"), int(port)


# ------------------------------------------------------------------------------------------- probing


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie counts as dead; our own exited children are reaped here)."""
    child = _children.get(pid)
    if child is not None:
        if child.poll() is None:
            return True
        del _children[pid]
        return False
    with contextlib.suppress(ChildProcessError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


def _our_pid(settings: Settings) -> int | None:
    """The pid in the pid file if that process is alive and is a Kafka broker (pids get reused)."""
    try:
        pid = int(_pid_file(settings).read_text().strip())
    except (OSError, ValueError):
        return None
    if not _alive(pid):
        return None
    cmdline = Path(f"/proc/{pid}/cmdline")
    if cmdline.exists():  # Linux: check it is really the broker; elsewhere trust the pid file
        with contextlib.suppress(OSError):
            if b"kafka.Kafka" not in cmdline.read_bytes().split(b"\0"):
                return None
    return pid


def status(settings: Settings) -> BrokerStatus:
    """Whether a broker answers on ``settings.bootstrap``, and whether it is the one this home started."""
    host, port = _address(settings)
    address = f"{host}:{port}"
    return BrokerStatus(
        running=is_up(address),
        address=address,
        pid=_our_pid(settings),
        log=_server_log(settings),
        version=settings.kafka_version,
        installed=(libs_dir(settings) / MARKER).is_file(),
    )


# ------------------------------------------------------------------------------------------ start/stop


def _server_properties(host: str, port: int, data: Path) -> str:
    """One KRaft node that is both broker and controller; every replication factor 1, so groups work."""
    return f"""# Written by stream_rec.ops.kafka_local at every start; edits are overwritten.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@{host}:{port + 1}
listeners=PLAINTEXT://{host}:{port},CONTROLLER://{host}:{port + 1}
advertised.listeners=PLAINTEXT://{host}:{port}
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs={data}
{ONE_NODE}"""


# What a broker that is the whole cluster needs, whatever its listeners: every replication factor 1 (groups fail
# otherwise), few threads on a laptop.
ONE_NODE = """num.partitions=1
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=2
background.threads=2
# The cleaner stays on (Faust changelogs are compacted) but its dedupe buffer (128 MiB by default) is
# allocated on the heap at start: keep it small so the 512 MiB heap is enough.
log.cleaner.dedupe.buffer.size=16777216
"""


def _log4j_properties(server_log: Path) -> str:
    """Everything to one size-capped file; Kafka's default config would write six files into the cwd."""
    return f"""# Written by stream_rec.ops.kafka_local at every start; edits are overwritten.
log4j.rootLogger=INFO, file
log4j.appender.file=org.apache.log4j.RollingFileAppender
log4j.appender.file.File={server_log}
log4j.appender.file.MaxFileSize=20MB
log4j.appender.file.MaxBackupIndex=2
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka=INFO
log4j.logger.org.apache.kafka=INFO
log4j.logger.kafka.request.logger=WARN
log4j.logger.state.change.logger=WARN
"""


def _java(libs: Path, log4j: Path, main: str, *args: str, flags: tuple[str, ...] = ()) -> list[str]:
    java = require("java", "install a Java runtime, 11 or newer (the Kafka broker is a Java program)")
    return [java, *flags, f"-Dlog4j.configuration=file:{log4j}", "-cp", f"{libs}/*", main, *args]


def _format_storage(libs: Path, broker: Path, data: Path) -> None:
    """Give the data directory a cluster id once (KRaft refuses to start on unformatted storage)."""
    if (data / "meta.properties").is_file():
        return
    cluster_id = "-"
    while cluster_id.startswith("-"):  # as Kafka's Uuid.randomUuid: a leading '-' reads as a CLI option
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
    cmd = _java(
        libs, broker / "log4j.properties", "kafka.tools.StorageTool",
        "format", "-t", cluster_id, "-c", str(broker / "server.properties"),
    )  # fmt: skip
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120, check=False)
    if proc.returncode != 0:
        tail = "\n".join(proc.stdout.decode("utf-8", "replace").splitlines()[-TAIL_LINES:])
        raise BrokerError(f"formatting the broker storage in {data} failed (exit {proc.returncode}):\n{tail}")


def _failure(settings: Settings, why: str, log_offset: int) -> BrokerError:
    broker = _broker_dir(settings)
    parts = [why]
    for path, since in ((_server_log(settings), log_offset), (broker / "stdout.log", 0)):
        tail = read_tail(path, since=since)
        if tail.strip():
            parts.append(f"--- last lines of {path}:\n{tail}")
    return BrokerError("\n".join(parts))


def start(settings: Settings, *, timeout: float = 60.0) -> BrokerStatus:
    """Start the local broker on ``settings.bootstrap`` (controller on port+1) and wait until it answers.

    Idempotent: if a broker already answers there, nothing is started and ``already_running`` is set. The
    broker runs in its own session so that it outlives the command that started it and a Ctrl-C in that
    terminal does not reach it; :func:`stop` ends it.
    """
    host, port = _address(settings)
    address = f"{host}:{port}"
    broker = _broker_dir(settings)

    def ready(pid: int | None, already: bool) -> BrokerStatus:
        return BrokerStatus(True, address, pid, _server_log(settings), settings.kafka_version, True, already)

    if is_up(address):
        return ready(_our_pid(settings), True)
    try:  # fail early and clearly when the address belongs to another machine (e.g. kafka:9092 in compose)
        with socket.socket() as probe:
            probe.bind((host, 0))
    except OSError as exc:
        raise BrokerError(
            f"cannot start a local broker on {address}: {host} is not an address of this machine ({exc}); "
            "unset STREAM_REC_BROKER or point it at 127.0.0.1:<port>"
        ) from exc
    libs = install(settings)
    with locked(broker / ".lock"):
        pid = _our_pid(settings)
        if pid is None:
            if is_up(address):  # started by someone else while we waited for the lock
                return ready(_our_pid(settings), True)
            for p, role in ((port, "broker"), (port + 1, "controller")):
                if _port_open(host, p):
                    raise BrokerError(
                        f"port {p} on {host} (the {role} listener) is taken by a program that is not a Kafka "
                        f"broker answering on {address}; stop it or choose another STREAM_REC_BROKER port"
                    )
            data = broker / "data"
            data.mkdir(parents=True, exist_ok=True)
            (broker / "server.properties").write_text(_server_properties(host, port, data))
            (broker / "log4j.properties").write_text(_log4j_properties(_server_log(settings)))
            _format_storage(libs, broker, data)
            log_offset = _server_log(settings).stat().st_size if _server_log(settings).exists() else 0
            cmd = _java(
                libs, broker / "log4j.properties", "kafka.Kafka", str(broker / "server.properties"),
                flags=(*_JVM_FLAGS, f"-Dkafka.logs.dir={broker}"),
            )  # fmt: skip
            with (broker / "stdout.log").open("wb") as out:
                proc = subprocess.Popen(
                    cmd, cwd=broker, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                    start_new_session=True,
                )  # fmt: skip
            _children[proc.pid] = proc
            pid = proc.pid
            _pid_file(settings).write_text(f"{pid}\n")
            started = True
        else:  # our broker is alive but not answering yet: probably still starting, so wait for it
            log_offset = 0
            started = False

        deadline = time.monotonic() + timeout
        while True:
            if not _alive(pid):
                _pid_file(settings).unlink(missing_ok=True)
                raise _failure(settings, f"the Kafka broker (pid {pid}) exited while starting", log_offset)
            if is_up(address, timeout=1.0):
                return ready(pid, not started)
            if time.monotonic() > deadline:
                _terminate(pid, 10.0)
                _pid_file(settings).unlink(missing_ok=True)
                raise _failure(
                    settings,
                    f"the Kafka broker (pid {pid}) did not answer on {address} within {timeout:.0f} s; stopped it",
                    log_offset,
                )
            time.sleep(0.25)


def _terminate(pid: int, timeout: float) -> None:
    """SIGTERM (Kafka shuts down cleanly), then SIGKILL to its process group if it is still there."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() > deadline:
            log.warning("Kafka broker pid %d ignored SIGTERM for %.0f s; killing it", pid, timeout)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)  # its own session: the pgid is its pid
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            kill_deadline = time.monotonic() + 10.0
            while _alive(pid) and time.monotonic() < kill_deadline:
                time.sleep(0.1)
            return
        time.sleep(0.1)


def stop(settings: Settings, *, timeout: float = 30.0) -> bool:
    """Stop the broker this home started; return whether one was running. Brokers not ours are left alone."""
    pid_file = _pid_file(settings)
    with locked(_broker_dir(settings) / ".lock"):
        pid = _our_pid(settings)
        if pid is not None:
            _terminate(pid, timeout)
            if _alive(pid):
                raise BrokerError(f"the Kafka broker (pid {pid}) survived SIGKILL")
        pid_file.unlink(missing_ok=True)
    return pid is not None
