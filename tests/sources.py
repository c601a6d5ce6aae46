"""A sample source wrapped around another, for tests that change what the daemon is fed or act
between blocks (a clock that jumps, a command after the last block, a probe of the daemon)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from hardware.block import Block


class WrappedSource:
    """The inner source's rate and blocks; subclasses override ``blocks`` to change or add to them.

    ``daemon`` is set by the test once the Daemon is made (for wrappers that look at it or
    command it). 12-bit full scale, as the simulated sensor's."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.daemon: Any = None

    @property
    def rate_hz(self) -> float:
        return float(self.inner.rate_hz)

    @property
    def channels(self) -> int:
        return 1

    @property
    def bits(self) -> int:
        return 12

    async def blocks(self) -> AsyncIterator[Block]:
        async for block in self.inner:
            yield block

    def __aiter__(self) -> AsyncIterator[Block]:
        return self.blocks()

    async def close(self) -> None:
        await self.inner.close()
