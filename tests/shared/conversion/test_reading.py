"""``read_ahead``: results in input order, reads really overlap, and the bounds hold."""

from __future__ import annotations

import threading
import time

import pytest

from shared.conversion.reading import read_ahead


def test_results_come_in_input_order_although_reads_finish_out_of_order():
    delays = [0.03, 0.0, 0.02, 0.0, 0.01] * 4

    def read(i: int) -> int:
        time.sleep(delays[i])
        return i * 10

    assert list(read_ahead(range(len(delays)), read, concurrency=4)) == [(i, i * 10) for i in range(len(delays))]


def test_reads_overlap_up_to_the_concurrency_and_never_beyond():
    running = peak = 0
    lock = threading.Lock()

    def read(i: int) -> int:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.02)
        with lock:
            running -= 1
        return i

    started = time.perf_counter()
    assert [i for i, _ in read_ahead(range(40), read, concurrency=8)] == list(range(40))
    elapsed = time.perf_counter() - started
    assert peak == 8
    assert elapsed < 40 * 0.02 / 2  # far from the 0.8 s of one read at a time


def test_bytes_in_flight_stay_bounded():
    issued: list[int] = []
    consumed = 0

    def read(i: int) -> int:
        issued.append(i)
        return i

    for i, _ in read_ahead(range(50), read, concurrency=8, size=lambda _i: 10, max_bytes_in_flight=30):
        consumed = i + 1
        time.sleep(0.001)
        assert len(issued) - consumed <= 3  # 30 bytes / 10 bytes per item, beyond the one consumed


def test_an_exception_stops_the_iteration_and_cancels_queued_reads():
    def read(i: int) -> int:
        if i == 3:
            raise RuntimeError("boom")
        return i

    with pytest.raises(RuntimeError, match="boom"):
        list(read_ahead(range(100), read, concurrency=4))


def test_concurrency_one_reads_in_the_callers_thread():
    threads = set()

    def read(i: int) -> int:
        threads.add(threading.get_ident())
        return i

    assert len(list(read_ahead(range(5), read, concurrency=1))) == 5
    assert threads == {threading.get_ident()}
