"""The page view's reads over a sync :class:`~recsys.store.FeatureStore`, in worker threads."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import anyio.to_thread

from feature_store import answers
from recsys.store import FeatureStore, ReadPlan, ReadResult


class ThreadedReader:
    """An :class:`~recsys.store.AsyncFeatureReads` over a sync :class:`~recsys.store.FeatureStore`,
    each read in a worker thread: for a store passed in by the caller, whose client cannot be
    awaited."""

    def __init__(self, store: FeatureStore) -> None:
        self.store = store

    async def read(self, plan: ReadPlan) -> ReadResult:
        return await anyio.to_thread.run_sync(self.store.read, plan)

    def store_answer(self, command: tuple[Any, ...], done: Callable[[str], None]) -> None:
        """The answer's write-back in a worker thread, not awaited (the store's own client)."""
        client = getattr(self.store, "client", None)
        if client is None:
            done(answers.FAILED)
            return

        def write() -> str:
            try:
                return answers.outcome(client.execute_command(*command))
            except Exception:
                return answers.FAILED

        future = asyncio.get_running_loop().run_in_executor(None, write)
        future.add_done_callback(lambda f: done(answers.FAILED if f.exception() else f.result()))

    async def item_revision(self) -> int:
        return await anyio.to_thread.run_sync(self.store.item_revision)

    async def ping(self) -> bool:
        return await anyio.to_thread.run_sync(self.store.ping)

    async def aclose(self) -> None:
        """Nothing to close: the store belongs to whoever passed it in."""
