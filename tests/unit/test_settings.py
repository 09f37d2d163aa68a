"""The settings object: copies are validated as the settings are; the cluster's security reaches every client."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from stream_rec.ops.processes import worker_env
from stream_rec.security import Security
from stream_rec.settings import ModelSettings, Settings


def test_a_replaced_copy_is_validated() -> None:
    assert ModelSettings().replaced(dim=16).dim == 16
    with pytest.raises(ValidationError, match="dim"):
        ModelSettings().replaced(dim=4)
    with pytest.raises(ValidationError, match="encoder"):
        ModelSettings().replaced(encoder="rnn")


def test_security_reaches_every_client_library_and_a_child_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("not read here")
    security = Security(
        protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512", username="bob", password="s3cret", ca_file=ca,
        check_hostname=False,
    )  # fmt: skip
    settings = Settings(broker="kafka.example:9093", security=security)
    python = settings.client_config(acks="all")
    assert python["bootstrap_servers"] == "kafka.example:9093" and python["acks"] == "all"
    assert python["security_protocol"] == "SASL_SSL" and python["sasl_mechanism"] == "SCRAM-SHA-512"
    assert python["sasl_plain_password"] == "s3cret" and python["ssl_cafile"] == str(ca)
    assert python["ssl_check_hostname"] is False
    assert Settings().client_config() == {"bootstrap_servers": "127.0.0.1:9092"}
    assert Settings().security.faust() is None and Settings().aio_client_config() == {
        "bootstrap_servers": "127.0.0.1:9092"
    }
    assert "s3cret" not in repr(settings)  # a secret never lands in a log line
    # what a child process is given reads back as the same settings, whatever the parent's environment said
    monkeypatch.setenv("STREAM_REC_SECURITY__USERNAME", "someone-else")
    env = worker_env(settings)
    monkeypatch.delenv("STREAM_REC_SECURITY__USERNAME")
    for key, value in env.items():
        if key.startswith("STREAM_REC_"):
            monkeypatch.setenv(key, value)
    assert Settings().security == security


@pytest.mark.parametrize(
    ("fields", "said"),
    [
        ({"protocol": "SASL_SSL"}, "needs a user name and a password"),
        ({"protocol": "PLAINTEXT", "ca_file": "ca.pem"}, "TLS files take effect with SSL or SASL_SSL"),
        ({"protocol": "SSL", "key_file": "ca.pem"}, "without security.cert_file"),
        ({"protocol": "SSL", "ca_file": "missing.pem"}, "no file"),
    ],
)
def test_security_that_cannot_work_is_refused_in_words(tmp_path: Path, fields: dict[str, str], said: str) -> None:
    (tmp_path / "ca.pem").write_text("x")
    given = {k: str(tmp_path / v) if k.endswith("_file") else v for k, v in fields.items()}
    with pytest.raises(ValidationError, match=said):
        Security(**given)  # type: ignore[arg-type]
