"""Celery app for the benchmark: Redis broker and result backend."""
import base64
import os

from celery import Celery

import peer_tasks

url = os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379/0")
app = Celery("gpuq_bench", broker=url, backend=url)
# JSON, as a web service would send it (Celery also refuses pickle as root)
app.conf.update(task_serializer="json", result_serializer="json", accept_content=["json"],
                worker_prefetch_multiplier=64, task_acks_late=False, worker_hijack_root_logger=False)


@app.task(name="mlp")
def mlp(x_b64, rows):
    return base64.b64encode(peer_tasks.mlp(base64.b64decode(x_b64), rows)).decode()
