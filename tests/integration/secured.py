"""A throwaway Kafka broker whose clients must use SASL over TLS, with a CA and certificates made for it (trustme),
run from the jars the local broker uses: clients authenticate with SCRAM-SHA-256 (or PLAIN) and a client
certificate (mutual TLS); the broker talks to itself on a loopback PLAINTEXT listener no client is told of."""

from __future__ import annotations

import base64
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import trustme
from cryptography.hazmat.primitives import serialization

from stream_rec.ops.kafka_install import install, require
from stream_rec.ops.kafka_local import ONE_NODE
from stream_rec.ops.processes import free_port
from stream_rec.security import Security
from stream_rec.settings import Settings

USERS = {"alice": "alice-secret"}  # PLAIN
SCRAM_USERS = {"bob": "bob-secret"}  # SCRAM-SHA-256


def _pkcs8(blob: bytes) -> bytes:
    """Kafka reads PEM private keys in PKCS#8 only; trustme writes the traditional form."""
    key = serialization.load_pem_private_key(blob, password=None)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@dataclass
class SecuredBroker:
    bootstrap: str
    folder: Path
    proc: subprocess.Popen[bytes]

    def security(self, user: str = "bob", password: str | None = None, mechanism: str = "SCRAM-SHA-256") -> Security:
        known = USERS | SCRAM_USERS
        return Security(
            protocol="SASL_SSL", sasl_mechanism=mechanism, username=user,  # type: ignore[arg-type]
            password=known[user] if password is None else password,
            ca_file=self.folder / "ca.pem", cert_file=self.folder / "client.pem", key_file=self.folder / "client.key",
        )  # fmt: skip

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def start(folder: Path, settings: Settings, timeout: float = 90.0) -> SecuredBroker:
    folder.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(folder / "ca.pem"))
    server = ca.issue_cert("127.0.0.1", "localhost")
    (folder / "server.pem").write_bytes(
        _pkcs8(server.private_key_pem.bytes()) + b"".join(blob.bytes() for blob in server.cert_chain_pems)
    )
    client = ca.issue_cert("stream-rec-client")
    (folder / "client.pem").write_bytes(b"".join(blob.bytes() for blob in client.cert_chain_pems))
    (folder / "client.key").write_bytes(client.private_key_pem.bytes())

    port, controller, internal = free_port(), free_port(), free_port()
    plain_users = " ".join(f'user_{u}="{p}"' for u, p in USERS.items())
    (folder / "server.properties").write_text(f"""process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{controller}
listeners=SASL_SSL://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller},INTERNAL://127.0.0.1:{internal}
advertised.listeners=SASL_SSL://127.0.0.1:{port},INTERNAL://127.0.0.1:{internal}
inter.broker.listener.name=INTERNAL
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,INTERNAL:PLAINTEXT,SASL_SSL:SASL_SSL
sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256
listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required {plain_users};
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
ssl.keystore.type=PEM
ssl.keystore.location={folder / "server.pem"}
ssl.truststore.type=PEM
ssl.truststore.location={folder / "ca.pem"}
listener.name.sasl_ssl.ssl.client.auth=required
log.dirs={folder / "data"}
{ONE_NODE}""")  # noqa: E501
    (folder / "log4j.properties").write_text(
        f"log4j.rootLogger=INFO, file\nlog4j.appender.file=org.apache.log4j.FileAppender\n"
        f"log4j.appender.file.File={folder / 'server.log'}\n"
        "log4j.appender.file.layout=org.apache.log4j.PatternLayout\n"
        "log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n\n"
    )
    libs = install(settings)
    java = [
        require("java", "install a Java runtime"), "-Xmx384m",
        f"-Dlog4j.configuration=file:{folder / 'log4j.properties'}", "-cp", f"{libs}/*",
    ]  # fmt: skip
    cluster = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode().replace("-", "A")
    scram = [f"--add-scram=SCRAM-SHA-256=[name={u},password={p}]" for u, p in SCRAM_USERS.items()]
    subprocess.run(
        [*java, "kafka.tools.StorageTool", "format", "-t", cluster, "-c", str(folder / "server.properties"), *scram],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    with (folder / "stdout.log").open("wb") as out:
        proc = subprocess.Popen(
            [*java, "kafka.Kafka", str(folder / "server.properties")], stdout=out, stderr=subprocess.STDOUT
        )
    broker = SecuredBroker(f"127.0.0.1:{port}", folder, proc)
    deadline = time.monotonic() + timeout
    while "Kafka Server started" not in _text(folder / "server.log"):
        if proc.poll() is not None or time.monotonic() > deadline:
            broker.stop()
            raise RuntimeError(f"the secured broker did not start:\n{_text(folder / 'server.log')[-3000:]}")
        time.sleep(0.3)
    return broker


def _text(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""
