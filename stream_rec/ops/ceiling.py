"""The benchmark's ceiling: a bare Faust agent that only decodes events and forwards them.

It reads the events topic the way the worker does (same app settings, same ``take_events`` batches), decodes
each value with orjson and forwards it to the recommendations topic, keyed by user: no validation, no table, no
model. Whatever it reaches on a machine is what Faust, the broker and the clients allow there, so the worker's
throughput is reported as a ratio to it. ``stream-rec bench`` runs it as ``python -m stream_rec.ops.ceiling``, with
the same STREAM_REC_* settings as a worker.
"""

from __future__ import annotations

from typing import Any

import faust
import orjson

from ..settings import Settings

__all__ = ["create_ceiling_app"]


def create_ceiling_app(settings: Settings) -> faust.App:
    app = faust.App(
        f"{settings.app_id}-ceiling",
        broker=f"kafka://{settings.bootstrap}",
        broker_credentials=settings.security.faust(),
        datadir=str(settings.worker_dir),
        web_port=settings.web_port,
        web_host="127.0.0.1",
        topic_partitions=settings.partitions,
        consumer_auto_offset_reset="earliest",
        producer_linger=settings.linger,  # as the worker's
    )
    raw: dict[str, Any] = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}
    events = app.topic(settings.topic_events, **raw)
    forwarded = app.topic(settings.topic_recommendations, **raw)

    @app.agent(events)
    async def forward(stream: faust.StreamT) -> None:
        async for batch in stream.take_events(settings.batch_size, within=settings.batch_within):  # type: ignore[attr-defined]
            for ev in batch:
                try:
                    event = orjson.loads(ev.value)
                except orjson.JSONDecodeError:
                    continue
                forwarded.send_soon(key=ev.key, value=orjson.dumps(event))

    return app


if __name__ == "__main__":
    from faust.worker import Worker

    settings = Settings.load()
    Worker(create_ceiling_app(settings), loglevel=settings.log_level, quiet=True).execute_from_commandline()
