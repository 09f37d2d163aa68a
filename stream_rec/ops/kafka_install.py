"""Fetching the local broker's jars from Maven Central, once, into ``<home>/kafka/<version>/libs``, and the
files and locks the broker's other commands (kafka_local.py) share with it.

Kafka's broker is a set of jars on Maven Central, so :func:`install` asks Maven to copy ``kafka_2.13`` and its
runtime dependencies (plus a logging backend, which Kafka's POM leaves out); nothing is built.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from ..errors import BrokerError
from ..settings import Settings

__all__ = ["MARKER", "TAIL_LINES", "home", "install", "libs_dir", "locked", "read_tail", "require"]

log = logging.getLogger(__name__)

# Kafka's POM does not name a logging backend; 3.9.x logs through slf4j 1.7 to log4j 1.x (reload4j).
_LOGGING_JARS = (
    ("org.slf4j", "slf4j-api", "1.7.36"),
    ("org.slf4j", "slf4j-reload4j", "1.7.36"),
    ("ch.qos.reload4j", "reload4j", "1.2.25"),
)
# Pinned so that a fetch does not depend on whichever plugin version Maven resolves that day.
_DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
MARKER = ".installed"
TAIL_LINES = 40
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")  # Maven 3.8 emits colour resets even with -B


def home(settings: Settings) -> Path:
    # Absolute, because the paths end up in server.properties and the JVM runs with another working directory.
    return settings.home.expanduser().resolve()


def libs_dir(settings: Settings) -> Path:
    return home(settings) / "kafka" / settings.kafka_version / "libs"


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Serialise install/start/stop across processes (two ``stream-rec`` commands at once must not race)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def read_tail(path: Path, lines: int = TAIL_LINES, since: int = 0) -> str:
    """The last ``lines`` lines of ``path`` written after byte offset ``since`` ('' if none)."""
    try:
        with path.open("rb") as fh:
            fh.seek(since if since <= path.stat().st_size else 0)
            data = fh.read()
    except OSError:
        return ""
    return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])


def require(tool: str, why: str) -> str:
    found = shutil.which(tool)
    if found is None:
        raise BrokerError(f"`{tool}` is not on PATH; {why}")
    return found


# -------------------------------------------------------------------------------------------- install


def _fetch_pom(version: str) -> str:
    deps = [("org.apache.kafka", "kafka_2.13", version), *_LOGGING_JARS]
    xml = "\n".join(
        f"    <dependency><groupId>{g}</groupId><artifactId>{a}</artifactId><version>{v}</version></dependency>"
        for g, a, v in deps
    )
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<!-- Fetch-only POM written by stream_rec.ops.kafka_local: nothing is built, Maven only copies jars. -->
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>stream-rec.local</groupId>
  <artifactId>kafka-broker-fetch</artifactId>
  <version>{version}</version>
  <packaging>pom</packaging>
  <dependencies>
{xml}
  </dependencies>
</project>
"""


def install(settings: Settings) -> Path:
    """Fetch the broker's jars once into ``<home>/kafka/<version>/libs`` and return that folder.

    Maven writes into a temporary sibling folder that is renamed into place only after the marker file is
    written, so an interrupted fetch is never mistaken for a complete one; later calls see the marker and
    return at once (no Maven, no network).
    """
    libs = libs_dir(settings)
    if (libs / MARKER).is_file():
        return libs
    mvn = require("mvn", "install Apache Maven (it fetches the Kafka broker jars from Maven Central)")
    require("java", "install a Java runtime, 11 or newer (the Kafka broker is a Java program)")
    root = libs.parent
    with locked(root / ".lock"):
        if (libs / MARKER).is_file():  # another process finished while we waited for the lock
            return libs
        if libs.exists():  # not ours to trust: no marker
            shutil.rmtree(libs)
        work = Path(tempfile.mkdtemp(prefix=".fetch-", dir=root))
        try:
            (work / "pom.xml").write_text(_fetch_pom(settings.kafka_version))
            out = work / "libs"
            cmd = [
                # Maven's own repository in the fetch folder, deleted with it: nothing is left in the account's
                # ~/.m2 (Java finds that from the account, not from $HOME), and only the jars are kept.
                mvn, "-q", "-B", "-Dstyle.color=never", "-f", str(work / "pom.xml"),
                f"-Dmaven.repo.local={work / 'repository'}",
                f"{_DEPENDENCY_PLUGIN}:copy-dependencies",
                "-DincludeScope=runtime", f"-DoutputDirectory={out}",
            ]  # fmt: skip
            log.info("fetching Kafka %s jars with Maven into %s", settings.kafka_version, libs)
            try:
                proc = subprocess.run(
                    cmd, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=1800, check=False
                )
            except subprocess.TimeoutExpired as exc:
                raise BrokerError("Maven did not finish fetching the Kafka jars within 30 minutes") from exc
            output = _ANSI.sub("", proc.stdout.decode("utf-8", "replace"))
            jars = list(out.glob("*.jar")) if out.is_dir() else []
            if proc.returncode != 0 or not any(j.name.startswith("kafka_2.13-") for j in jars):
                tail = "\n".join(output.splitlines()[-TAIL_LINES:])
                raise BrokerError(
                    f"Maven could not fetch org.apache.kafka:kafka_2.13:{settings.kafka_version} "
                    f"(exit {proc.returncode}):\n{tail}"
                )
            (out / MARKER).write_text(f"kafka_2.13 {settings.kafka_version}, {len(jars)} jars\n")
            out.rename(libs)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return libs
