"""Peer job queues (arq, RQ, Celery) driven by ``bench/queue_throughput.py``.

Each module runs in its peer's own virtualenv (its pins clash with opsctl's), started with
``PYTHONPATH=bench``, and is at once the worker's task module and a small command line:
``python -m _peers.<name>_peer enqueue|latency|worker``.
"""
