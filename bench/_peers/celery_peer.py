"""Celery: the app, bulk enqueue and latency driver (runs in Celery's own virtualenv).

Redis is the broker; no result backend (Celery's default), so a no-op task writes nothing back.
The worker is ``--pool=solo`` (one process, one task at a time, so the peak RSS measured is the
whole worker), with the default prefetch multiplier and early acknowledgement, logging at
WARNING, ``--without-mingle --without-gossip`` so start-up does not wait on other workers.
"""

from __future__ import annotations

from importlib.metadata import version

from celery import Celery

from _peers._common import QUEUE, REDIS_URL, main, mark, stamp

app = Celery("bench", broker=REDIS_URL)
app.conf.update(
    task_default_queue=QUEUE,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)


@app.task(name="noop")
def noop() -> None:
    mark()


@app.task(name="stamp_job")
def stamp_job(key: str) -> None:
    stamp(key)


def bulk_enqueue(n: int) -> None:
    with app.producer_or_acquire() as producer:
        for _ in range(n):
            noop.apply_async(producer=producer)


def enqueue_stamp(key: str) -> None:
    stamp_job.apply_async((key,))


def run_worker() -> None:
    app.worker_main(
        [
            "worker",
            "--pool=solo",
            "--concurrency=1",
            "--loglevel=WARNING",
            "--without-mingle",
            "--without-gossip",
            f"--queues={QUEUE}",
        ]
    )


if __name__ == "__main__":
    main(
        bulk_enqueue=bulk_enqueue,
        enqueue_stamp=enqueue_stamp,
        run_worker=run_worker,
        describe=f"celery {version('celery')}, --pool=solo -c 1, Redis broker, no result "
        "backend, --without-mingle --without-gossip",
    )
