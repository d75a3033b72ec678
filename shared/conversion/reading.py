"""Concurrent, bounded reads of a dataset's files, in order.

Blob storage answers each read after 10-30 ms of latency whatever its size, so reading one file at a time
leaves the decoder waiting. ``read_ahead`` keeps a few reads in flight on threads (network I/O and
``hashlib`` release the GIL) while the caller decodes, and yields the results in the order of its input,
so the conversion stays deterministic. Memory: at most ``depth`` files are held, and no more than
``max_bytes_in_flight`` bytes of them (one file larger than that is still read, alone).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")

DEFAULT_READ_CONCURRENCY = 16
DEFAULT_BYTES_IN_FLIGHT = 64 * 1024 * 1024


def read_ahead(
    items: Iterable[Item],
    read: Callable[[Item], Result],
    *,
    concurrency: int,
    size: Callable[[Item], int] = lambda _item: 0,
    max_bytes_in_flight: int = DEFAULT_BYTES_IN_FLIGHT,
) -> Iterator[tuple[Item, Result]]:
    """``(item, read(item))`` for every item, in input order, with up to ``concurrency`` reads running
    on threads ahead of the consumer. ``read`` must not raise for one bad item (return the error
    instead): an exception stops the iteration. ``concurrency <= 1`` reads in the caller's thread."""
    if concurrency <= 1:
        for item in items:
            yield item, read(item)
        return
    depth = concurrency * 2  # reads queued beyond the running ones keep the threads busy
    pending: deque[tuple[Item, int, Future[Result]]] = deque()
    in_flight = 0
    iterator = iter(items)
    exhausted = False
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="visiontune-read") as pool:
        try:
            while True:
                while not exhausted and len(pending) < depth:
                    if pending and in_flight >= max_bytes_in_flight:
                        break
                    try:
                        item = next(iterator)
                    except StopIteration:
                        exhausted = True
                        break
                    expected = max(0, int(size(item)))
                    pending.append((item, expected, pool.submit(read, item)))
                    in_flight += expected
                if not pending:
                    return
                item, expected, future = pending.popleft()
                in_flight -= expected
                yield item, future.result()
        finally:
            for _item, _expected, future in pending:
                future.cancel()
