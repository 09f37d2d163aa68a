"""How every Kafka client of stream-rec reaches a secured cluster: TLS and SASL, said once, in the settings.

The same fields (``STREAM_REC_SECURITY__<NAME>``) configure the three client libraries the project uses: Faust
(the worker), aiokafka (the worker's model-updates reader) and kafka-python (the trainer, ``produce``,
``consume``, ``forget``, ``topics``, bench and demo); :meth:`Security.kafka_python`, :meth:`Security.aiokafka`
and :meth:`Security.faust` translate them, so no client is configured by hand anywhere else.

>>> Security().kafka_python()
{}
>>> Security(protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-256", username="u", password="p").kafka_python()[
...     "sasl_mechanism"]
'SCRAM-SHA-256'
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

__all__ = ["Security"]


class Security(BaseModel):
    """The cluster's security settings (Kafka's ``security.protocol``, ``ssl.*`` and ``sasl.*``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT",
        description="how clients talk to the brokers: PLAINTEXT, SSL (TLS), SASL_PLAINTEXT or SASL_SSL (SASL over "
        "TLS, what a managed cluster asks for)",
    )
    ca_file: Path | None = Field(
        None, description="PEM file of the certificate authorities that signed the brokers' certificates; unset = "
        "the system's",
    )  # fmt: skip
    cert_file: Path | None = Field(
        None, description="PEM file of this client's certificate (chain), where the brokers ask for one (mutual TLS)"
    )
    key_file: Path | None = Field(None, description="PEM file of the client certificate's private key")
    key_password: SecretStr | None = Field(None, description="password of key_file, if it is encrypted")
    check_hostname: bool = Field(True, description="check that the broker's certificate names the host dialled")
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        "PLAIN", description="SASL mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"
    )
    username: str | None = Field(None, description="SASL user name")
    password: SecretStr | None = Field(None, description="SASL password")

    @property
    def tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    @property
    def sasl(self) -> bool:
        return self.protocol.startswith("SASL_")

    @model_validator(mode="after")
    def _consistent(self) -> Security:
        if self.sasl and (not self.username or self.password is None):
            raise ValueError(
                f"security.protocol {self.protocol} needs a user name and a password (STREAM_REC_SECURITY__USERNAME, "
                "STREAM_REC_SECURITY__PASSWORD)"
            )
        tls_fields = [name for name in ("ca_file", "cert_file", "key_file") if getattr(self, name) is not None]
        if tls_fields and not self.tls:
            raise ValueError(
                f"security.{tls_fields[0]} is set but security.protocol is {self.protocol}: TLS files take effect "
                "with SSL or SASL_SSL"
            )
        if self.key_file is not None and self.cert_file is None:
            raise ValueError("security.key_file is set without security.cert_file (the certificate it belongs to)")
        for name in tls_fields:
            if not Path(getattr(self, name)).is_file():
                raise ValueError(f"security.{name}: no file {getattr(self, name)}")
        return self

    def env(self) -> dict[str, str]:
        """The ``STREAM_REC_SECURITY__*`` variables that give a child process these settings (secrets included)."""
        out: dict[str, str] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            out[f"STREAM_REC_SECURITY__{name.upper()}"] = str(value).lower() if isinstance(value, bool) else str(value)
        return out

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context of aiokafka and Faust (None without TLS)."""
        if not self.tls:
            return None
        context = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
        context.check_hostname = self.check_hostname
        if self.cert_file is not None:
            context.load_cert_chain(
                str(self.cert_file), str(self.key_file) if self.key_file else None, self._secret(self.key_password)
            )
        return context

    def kafka_python(self) -> dict[str, Any]:
        """Keyword arguments of kafka-python's KafkaProducer, KafkaConsumer and KafkaAdminClient."""
        if self.protocol == "PLAINTEXT":
            return {}
        out: dict[str, Any] = {"security_protocol": self.protocol}
        if self.tls:
            out |= {
                "ssl_cafile": str(self.ca_file) if self.ca_file else None,
                "ssl_certfile": str(self.cert_file) if self.cert_file else None,
                "ssl_keyfile": str(self.key_file) if self.key_file else None,
                "ssl_password": self._secret(self.key_password),
                "ssl_check_hostname": self.check_hostname,
            }
        if self.sasl:
            out |= self._sasl()
        return out

    def aiokafka(self) -> dict[str, Any]:
        """Keyword arguments of aiokafka's clients."""
        if self.protocol == "PLAINTEXT":
            return {}
        out: dict[str, Any] = {"security_protocol": self.protocol}
        if self.tls:
            out["ssl_context"] = self.ssl_context()
        if self.sasl:
            out |= self._sasl()
        return out

    def faust(self) -> Any:
        """Faust's ``broker_credentials`` (None for PLAINTEXT)."""
        import faust

        if self.sasl:
            return faust.SASLCredentials(
                username=self.username,
                password=self._secret(self.password),
                ssl_context=self.ssl_context(),
                mechanism=self.sasl_mechanism,
            )
        if self.tls:
            return faust.SSLCredentials(self.ssl_context())
        return None

    def _sasl(self) -> dict[str, Any]:
        return {
            "sasl_mechanism": self.sasl_mechanism,
            "sasl_plain_username": self.username,
            "sasl_plain_password": self._secret(self.password),
        }

    @staticmethod
    def _secret(value: SecretStr | None) -> str | None:
        return value.get_secret_value() if value is not None else None
