"""The worker process's wait while mail floods in (service._ChildStop.yield_to_intake),
fed by a real wake-up pipe as the daemon's intake writes it: one byte per message."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Iterator

import pytest

from mailtriage.service import _ChildStop


@pytest.fixture
def pipe() -> Iterator[tuple[_ChildStop, int]]:
    reader, writer = multiprocessing.Pipe(duplex=False)
    stop = _ChildStop(reader)
    try:
        yield stop, writer.fileno()
    finally:
        signal.set_wakeup_fd(-1)
        reader.close()
        writer.close()


def _feed(fd: int, per_second: float, seconds: float) -> threading.Thread:
    def run() -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            os.write(fd, b"w")
            time.sleep(1 / per_second)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def _timed(stop: _ChildStop, per_second: float, longest: float) -> float:
    started = time.monotonic()
    stop.yield_to_intake(per_second, longest)
    return time.monotonic() - started


def test_no_wait_when_mail_trickles_in(pipe: tuple[_ChildStop, int]) -> None:
    stop, fd = pipe
    feeder = _feed(fd, 20, 0.6)
    time.sleep(0.3)
    assert _timed(stop, 100, 5.0) < 0.1
    feeder.join()
    assert _timed(stop, 100, 5.0) < 0.1


def test_waits_while_the_flood_lasts_then_goes_on(pipe: tuple[_ChildStop, int]) -> None:
    stop, fd = pipe
    feeder = _feed(fd, 400, 1.2)
    time.sleep(0.2)
    waited = _timed(stop, 100, 10.0)
    feeder.join()
    assert 0.6 < waited < 2.5  # about the rest of the flood, not the 10 s cap


def test_waits_at_most_the_longest_and_a_stop_ends_it(pipe: tuple[_ChildStop, int]) -> None:
    stop, fd = pipe
    feeder = _feed(fd, 400, 2.0)
    time.sleep(0.2)
    assert 0.4 < _timed(stop, 100, 0.5) < 1.0
    stop.set()
    assert _timed(stop, 100, 10.0) < 0.1
    feeder.join()
    assert _timed(stop, 0, 10.0) < 0.1  # 0: never wait


def test_a_wait_ended_by_its_cap_still_says_when_the_flood_eases(
    pipe: tuple[_ChildStop, int], caplog: pytest.LogCaptureFixture
) -> None:
    """The wait ends at its cap while mail still floods in (the worker files a round):
    the end of the flood is said later, by a round's check, once and only once."""
    stop, fd = pipe
    caplog.set_level("INFO", logger="mailtriage.service")
    feeder = _feed(fd, 400, 1.0)
    time.sleep(0.2)
    assert _timed(stop, 100, 0.3) < 0.6  # the cap, the flood goes on
    stop.flood_over(100)  # a round during the flood: not over
    assert "filing waits while the flood lasts" in caplog.text
    assert "eased" not in caplog.text
    feeder.join()
    for _ in range(5):  # the rounds after it (the rate is counted over the time between)
        time.sleep(0.15)
        stop.flood_over(100)
    assert caplog.text.count("the flood has eased") == 1
