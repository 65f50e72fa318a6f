"""RQ: the tasks, bulk enqueue and latency driver (runs in RQ's own virtualenv).

The worker is a :class:`rq.SimpleWorker`: it runs each job in its own process, where the
default ``Worker`` forks a work horse per job, so it is RQ's fastest one-process setup and its
peak RSS is that of the one process measured. Bulk enqueue is ``Queue.enqueue_many`` (one pipeline a
thousand jobs).
"""

from __future__ import annotations

from importlib.metadata import version

from rq import Queue, SimpleWorker

from _peers._common import QUEUE, client, main, mark, stamp

CHUNK = 1000
# By import path: run as ``python -m``, this module is ``__main__``, which RQ refuses to name.
NOOP = "_peers.rq_peer.noop"
STAMP = "_peers.rq_peer.stamp_job"


def noop() -> None:
    mark()


def stamp_job(key: str) -> None:
    stamp(key)


def _queue() -> Queue:
    return Queue(QUEUE, connection=client())


def bulk_enqueue(n: int) -> None:
    queue = _queue()
    for start in range(0, n, CHUNK):
        size = min(CHUNK, n - start)
        queue.enqueue_many([Queue.prepare_data(NOOP) for _ in range(size)])


def enqueue_stamp(key: str) -> None:
    _queue().enqueue(STAMP, key)


def run_worker() -> None:
    SimpleWorker([_queue()], connection=client()).work(logging_level="WARNING")


if __name__ == "__main__":
    main(
        bulk_enqueue=bulk_enqueue,
        enqueue_stamp=enqueue_stamp,
        run_worker=run_worker,
        describe=f"rq {version('rq')}, SimpleWorker (no fork a job), enqueue_many x{CHUNK}",
    )
