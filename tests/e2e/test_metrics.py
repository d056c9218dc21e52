"""Metrics and health through HTTP after real jobs: counts match what ran,
histograms add up, /readyz follows Redis."""
import re
import socket
import time
import unittest
import urllib.error
import urllib.request

import numpy as np

from harness import GPUQ, WorkerTest, free_port, make_mlp, tensor
from test_cli import run


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def parse(text):
    """Prometheus text format -> {(name, frozenset(labels)): value}."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$', line)
        assert m, f"not exposition format: {line!r}"
        labels = frozenset(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(3) or ""))
        out[(m.group(1), labels)] = float(m.group(4))
    return out


def metric(ms, name, **labels):
    return ms.get((name, frozenset(labels.items())))


class Metrics(WorkerTest):
    def setUp(self):
        super().setUp()
        make_mlp(self.path("m.safetensors"), [4, 3])
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.w = self.worker("--model", f"m={self.path('m.safetensors')}", "--metrics-addr", f"127.0.0.1:{self.port}")

    def test_counts_after_real_jobs(self):
        reply = self.client.key("reply:m")
        rows = 0
        for i in range(10):
            n = 1 + i % 3
            rows += n
            self.client.enqueue({"op": "mlp", "model": "m", "inputs": {"x": tensor(np.ones((n, 4), np.float32))},
                                 "reply_to": reply})
        for _ in range(3):
            self.client.enqueue({"op": "mlp", "model": "nope", "inputs": {"x": tensor(np.ones((1, 4), np.float32))},
                                 "reply_to": reply})
        self.client.enqueue(None, raw=b"garbage")
        for _ in range(13):
            self.client.wait(reply)
        deadline, ms = time.time() + 10, {}
        while time.time() < deadline:      # gauges are sampled once a second
            status, text = get(self.base + "/metrics")
            self.assertEqual(status, 200)
            ms = parse(text)
            if metric(ms, "gpuq_pending_jobs", queue="default") == 0 and metric(ms, "gpuq_inflight_rows") == 0 \
                    and metric(ms, "gpuq_dead_letters_total", queue="default", reason="bad_request") == 1:
                break
            time.sleep(0.2)
        self.assertEqual(metric(ms, "gpuq_jobs_total", queue="default", op="mlp", status="ok"), 10)
        self.assertEqual(metric(ms, "gpuq_jobs_total", queue="default", op="mlp", status="unknown_model"), 3)
        self.assertEqual(metric(ms, "gpuq_jobs_total", queue="default", op="matmul", status="ok"), 0)
        self.assertEqual(metric(ms, "gpuq_dead_letters_total", queue="default", reason="bad_request"), 1)
        # the histograms by op and model: an unknown model is model=""
        self.assertEqual(metric(ms, "gpuq_total_seconds_count", op="mlp", model="m"), 10)
        self.assertEqual(metric(ms, "gpuq_total_seconds_count", op="mlp", model=""), 3)
        self.assertEqual(metric(ms, "gpuq_compute_seconds_count", op="mlp", model="m"), 10)
        self.assertIsNone(metric(ms, "gpuq_compute_seconds_count", op="mlp", model=""))
        self.assertEqual(metric(ms, "gpuq_batch_rows_sum", op="mlp", model="m"), rows)
        self.assertEqual(metric(ms, "gpuq_batch_rows_bucket", op="mlp", model="m", le="+Inf"),
                         metric(ms, "gpuq_batch_rows_count", op="mlp", model="m"))
        buckets = [v for (n, l), v in ms.items() if n == "gpuq_total_seconds_bucket" and ("model", "m") in l]
        self.assertEqual(max(buckets), 10)
        self.assertEqual(metric(ms, "gpuq_backlog_jobs", queue="default"), 0)
        self.assertEqual(metric(ms, "gpuq_pending_jobs", queue="default"), 0)
        self.assertEqual(metric(ms, "gpuq_inflight_rows"), 0)
        self.assertEqual(metric(ms, "gpuq_ready"), 1)
        self.assertEqual(metric(ms, "gpuq_batch_trouble_total", kind="split"), 0)
        self.assertEqual(metric(ms, "gpuq_batch_trouble_total", kind="failed"), 0)
        self.assertEqual(metric(ms, "gpuq_backend_info", backend="cpu", device=[d for (n, l), v in ms.items()
                         if n == "gpuq_backend_info" for k, d in l if k == "device"][0]), 1)

    def test_health_and_readiness(self):
        self.assertEqual(get(self.base + "/healthz"), (200, "ok\n"))
        self.assertEqual(get(self.base + "/readyz")[0], 200)
        self.assertEqual(get(self.base + "/nope")[0], 404)
        self.redis.kill()
        deadline = time.time() + 10
        while get(self.base + "/readyz")[0] != 503 and time.time() < deadline:
            time.sleep(0.1)
        self.assertEqual(get(self.base + "/readyz")[0], 503)
        self.assertEqual(get(self.base + "/healthz")[0], 200, "alive while Redis is away")
        self.redis.start()
        deadline = time.time() + 20
        while get(self.base + "/readyz")[0] != 200 and time.time() < deadline:
            time.sleep(0.1)
        self.assertEqual(get(self.base + "/readyz")[0], 200)

    def test_bad_addresses_exit_2(self):
        for addr, why in ((f"127.0.0.1:{self.port}", "cannot listen"), ("nocolon", "HOST:PORT"),
                          ("127.0.0.1:80000", "1 to 65535"), (":0", "1 to 65535")):
            p = run("worker", "--redis", self.redis.url, "--backend", "cpu", "--metrics-addr", addr)
            self.assertEqual(p.returncode, 2, p.stderr)
            self.assertIn(why, p.stderr)


if __name__ == "__main__":
    unittest.main()
