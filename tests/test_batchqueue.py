"""The saved-event queue: order, batches, back-pressure, and no lost wake-up."""

from __future__ import annotations

import threading

from theater_py._batchqueue import BatchQueue


def _drain(queue: BatchQueue[object], stop: object, batches: list[list[object]]) -> None:
    while True:
        batch = queue.take()
        batches.append(batch)
        if stop in batch:
            return


def test_items_come_out_in_order_in_batches_of_at_most_the_limit() -> None:
    queue: BatchQueue[int] = BatchQueue(maxsize=100, batch=3, linger=0.0)
    for item in range(7):
        queue.put(item)
    assert [queue.take(), queue.take(), queue.take()] == [[0, 1, 2], [3, 4, 5], [6]]
    assert len(queue) == 0


def test_many_producers_lose_reorder_or_repeat_nothing_through_a_small_queue() -> None:
    # maxsize 8 makes producers wait for room over and over; a tiny linger makes the
    # consumer sleep and wake often: every lost wake-up would hang (bounded by join).
    queue: BatchQueue[object] = BatchQueue(maxsize=8, batch=5, linger=0.0005)
    stop = object()
    batches: list[list[object]] = []
    consumer = threading.Thread(target=_drain, args=(queue, stop, batches), daemon=True)
    consumer.start()

    def produce(producer: int) -> None:
        for seq in range(2000):
            queue.put((producer, seq), urgent=seq % 97 == 0)

    producers = [threading.Thread(target=produce, args=(n,), daemon=True) for n in range(4)]
    for thread in producers:
        thread.start()
    for thread in producers:
        thread.join(60)
        assert not thread.is_alive(), "a producer never got room"
    queue.put(stop, urgent=True)
    consumer.join(60)
    assert not consumer.is_alive(), "the consumer missed a wake-up"
    assert all(1 <= len(batch) <= 5 for batch in batches)
    taken = [item for batch in batches for item in batch]
    assert taken[-1] is stop
    for producer in range(4):
        assert [seq for who, seq in taken[:-1] if who == producer] == list(range(2000))


def test_an_urgent_item_ends_the_linger() -> None:
    queue: BatchQueue[str] = BatchQueue(maxsize=100, batch=100, linger=3600.0)
    batches: list[list[str]] = []
    queue.put("row")
    consumer = threading.Thread(target=lambda: batches.append(queue.take()), daemon=True)
    consumer.start()
    queue.put("flush", urgent=True)
    consumer.join(30)
    assert not consumer.is_alive(), "an urgent item waited for the hour-long linger"
    assert batches[0][-1] == "flush"


def test_a_full_batch_ends_the_linger() -> None:
    queue: BatchQueue[int] = BatchQueue(maxsize=100, batch=4, linger=3600.0)
    batches: list[list[int]] = []
    consumer = threading.Thread(target=lambda: batches.append(queue.take()), daemon=True)
    consumer.start()
    for item in range(4):
        queue.put(item)
    consumer.join(30)
    assert not consumer.is_alive(), "a full batch waited for the hour-long linger"
    assert batches == [[0, 1, 2, 3]]
