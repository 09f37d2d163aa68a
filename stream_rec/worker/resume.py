"""How a worker resumes its stream partitions once its table is recovered, without losing a record.

Faust (faust-streaming 0.15.3, ``Recovery.on_recovery_completed``) ends a recovery by resuming the stream
partitions, seeking them to their committed offsets, and then resuming flow control, which clears the agents'
queues. After a restore from the changelog (a restart after SIGKILL, or a rebalance) the fetcher is already
running, so records fetched in the moments between the resume and the clear are queued, then cleared. The
consumer has marked them read, so their copies fetched again from the committed offset are dropped as
duplicates: the events are never processed, the commits of their partition stall behind them, and only the
next restart reads them again (faust-streaming issue #596). Here the partitions stay paused until they are
sought and the queues are cleared, so every record fetched after the recovery reaches the agent.

The fetch has a second way to lose records. Faust's consumer thread asks aiokafka for the records of the active
partitions as a live set, which the event loop's thread changes as partitions pause and resume; aiokafka reads
an empty set as every partition, and so hands over what it prefetched for the paused stream partitions, which
Faust then drops as not active, past their offsets. It does so as a recovery ends, when the changelog pauses
before the streams resume. Here the consumer asks with a copy taken on the event loop, and asks for nothing
when no partition is active. Both showed in the delivery test killing a worker mid-stream
(tests/integration/test_delivery.py).
"""

from __future__ import annotations

import asyncio
from typing import Any

from faust.tables.manager import TableManager
from faust.tables.recovery import Recovery
from faust.transport.drivers import aiokafka
from faust.types import TP

__all__ = ["ResumingRecovery", "ResumingTableManager", "ResumingTransport"]


class ResumingRecovery(Recovery):
    """Faust's recovery, resuming the stream partitions only after they are sought and the queues cleared."""

    async def on_recovery_completed(self, generation_id: int = 0) -> None:
        app: Any = self.app
        consumer = app.consumer
        self.log.info("Restore complete!")
        await app.on_rebalance_complete.send()
        self._set_recovery_ended()
        done = [
            asyncio.ensure_future(
                table.on_recovery_completed(self.actives_for_table[table], self.standbys_for_table[table])
            )
            for table in self.tables.values()
        ]
        if done:
            await asyncio.wait(done)
        if app.consumer_generation_id != generation_id:
            self.log.warning(f"Recovery rebalancing again app id {app.consumer_generation_id} param {generation_id}")
            return
        await self.resume_streams_sought()
        self.completed.set()
        consumer.resume_flow()
        await app._fetcher.maybe_start()
        self.tables.on_actives_ready()
        if not app.assignor.assigned_standbys():
            self.tables.on_standbys_ready()
        app.on_rebalance_end()
        self.log.info("Worker ready")

    async def resume_streams_sought(self) -> None:
        """Seek the paused stream partitions to their committed offsets, clear the queues of anything read
        before, and only then resume the partitions: nothing is fetched between the seek and the clear."""
        consumer = self.app.consumer
        streams = {tp for tp in consumer.assignment() if not self._is_changelog_tp(tp)}
        if streams:
            self.log.info("Seek stream partitions to committed offsets.")
            await self._wait(consumer.perform_seek(), timeout=self.app.conf.broker_request_timeout)
        self.app.flow_control.resume()  # clears the queues: of records from before the seek only
        consumer.resume_partitions(streams)


class ResumingTableManager(TableManager):
    """Faust's table manager with :class:`ResumingRecovery` (the app's ``TableManager`` setting)."""

    @property
    def recovery(self) -> Recovery:
        if self._recovery is None:
            self._recovery = ResumingRecovery(self.app, self, beacon=self.beacon, loop=self.loop)
        return self._recovery


class _ConsumerThread(aiokafka.AIOKafkaConsumerThread):
    async def getmany(self, active_partitions: set[TP] | None, timeout: float) -> Any:
        if active_partitions is not None and not active_partitions:
            return {}  # aiokafka would read no partitions as all of them, paused ones included
        frozen = None if active_partitions is None else frozenset(active_partitions)  # on this loop, not the thread's
        return await super().getmany(frozen, timeout)  # type: ignore[arg-type]


class _Consumer(aiokafka.Consumer):
    def _new_consumer_thread(self) -> aiokafka.AIOKafkaConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class ResumingTransport(aiokafka.Transport):
    """Faust's aiokafka transport, asking for the records of a copy of the active partitions (the app's
    ``transport``)."""

    Consumer = _Consumer
