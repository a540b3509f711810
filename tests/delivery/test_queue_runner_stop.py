"""The queue runner stops when told to, whatever it is doing at that moment (docs/decisions/0045).

Found by CI: a delivery that ended as the server was stopping set the runner's wake-up event in the same
loop iteration as stop() cancelled it; `asyncio.wait_for` on Python 3.11 returned the event instead of
raising the cancellation, the runner went on, and `postoffice run` never exited after SIGTERM."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.delivery.harness import Harness


async def _parked(event: asyncio.Event) -> None:
    """Until the runner's task waits on its wake-up event (its first pass over the empty queue is done)."""
    async with asyncio.timeout(30):
        # Polled: nothing signals "a task now waits on this event".
        while not getattr(event, "_waiters", None):  # noqa: ASYNC110
            await asyncio.sleep(0.001)


def test_stop_ends_the_runner_when_a_wake_up_arrives_in_the_same_instant(tmp_path: Path) -> None:
    harness = Harness(tmp_path)
    try:

        async def scenario() -> int:
            stopped = 0
            for _ in range(20):
                runner = harness.runner()
                runner.start()
                await _parked(runner._wake)
                runner.wake()  # a delivery's end wakes the runner ...
                async with asyncio.timeout(30):  # ... as stop() cancels it: it must end, not loop on
                    await runner.stop()
                stopped += 1
            return stopped

        assert harness.call(scenario()) == 20
    finally:
        harness.stop()


def test_stop_ends_the_runner_while_it_is_idle_and_while_it_is_busy(tmp_path: Path) -> None:
    harness = Harness(tmp_path)
    try:

        async def scenario() -> None:
            idle = harness.runner()
            idle.start()
            await _parked(idle._wake)
            async with asyncio.timeout(30):
                await idle.stop()
            busy = harness.runner()
            busy.start()  # stopped during its first pass, before it parks
            async with asyncio.timeout(30):
                await busy.stop()

        harness.call(scenario())
    finally:
        harness.stop()
