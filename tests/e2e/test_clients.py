"""The Python and Node clients and their gateway examples, against a real
Redis and worker: results right, errors surfaced, requests waiting side by
side without blocking the event loop."""
import asyncio
import json
import os
import shutil
import subprocess
import time
import unittest
import urllib.error
import urllib.request

import numpy as np

from harness import WorkerTest, free_port, make_mlp, mlp_ref

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
PY_CLIENT = os.path.join(ROOT, "clients", "python")
NODE_CLIENT = os.path.join(ROOT, "clients", "node")
NODE_ENV = {"NODE_PATH": "/usr/share/nodejs"}

import sys  # noqa: E402
sys.path.insert(0, PY_CLIENT)
from gpuq_client import AsyncClient, Client, GpuqError  # noqa: E402


def post(url, body):
    req = urllib.request.Request(url, json.dumps(body).encode(), {"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def wait_http(url, proc, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: server exited")
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


class Clients(WorkerTest):
    def setUp(self):
        super().setUp()
        self.layers = make_mlp(self.path("m.safetensors"), [4, 6, 3], seed=4)
        self.worker("--model", f"encoder={self.path('m.safetensors')}")
        self.procs = []

    def tearDown(self):
        for p in self.procs:
            p.kill()
            p.wait()
        super().tearDown()

    def start(self, argv, cwd, env):
        p = subprocess.Popen(argv, cwd=cwd, env=dict(os.environ, **env), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        self.procs.append(p)
        return p

    def test_python_client(self):
        gq = Client(self.redis.url)
        x = np.random.default_rng(1).standard_normal((3, 4)).astype(np.float32)
        res = gq.run("mlp", {"x": x}, model="encoder", id="py-1", meta=[1, 2])
        self.assertTrue(res.ok)
        np.testing.assert_allclose(res.outputs["y"], mlp_ref(self.layers, x), rtol=1e-5, atol=1e-5)
        self.assertEqual(res.meta, [1, 2])
        self.assertEqual(gq.result("py-1").id, "py-1")
        with self.assertRaises(GpuqError) as e:
            gq.run("mlp", {"x": x[:, :3]}, model="encoder").raise_for_error()
        self.assertEqual(e.exception.code, "shape_mismatch")
        with self.assertRaises(TimeoutError):
            gq.run("mlp", {"x": x}, model="encoder", queue="nobody-serves-this", timeout=1)

    def test_python_async_client_concurrent(self):
        async def main():
            gq = AsyncClient(self.redis.url)
            xs = [np.full((1, 4), i, np.float32) for i in range(30)]
            results = await asyncio.gather(*(gq.run("mlp", {"x": x}, model="encoder") for x in xs))
            await gq.close()
            return xs, results
        xs, results = asyncio.run(main())
        for x, r in zip(xs, results):
            np.testing.assert_allclose(r.outputs["y"], mlp_ref(self.layers, x), rtol=1e-5, atol=1e-5)
        self.assertGreater(max(r.timing["batch_size"] for r in results), 1, "waiting side by side, they batch")

    def test_fastapi_gateway(self):
        port = free_port()
        p = self.start([sys.executable, "-m", "uvicorn", "fastapi_gateway:app", "--port", str(port), "--log-level",
                        "warning"], os.path.join(PY_CLIENT, "examples"),
                       {"GPUQ_REDIS": self.redis.url, "GPUQ_MODEL_NAME": "encoder"})
        base = f"http://127.0.0.1:{port}"
        wait_http(base + "/healthz", p)
        x = [[0.5, -1.0, 2.0, 0.0]]
        status, body = post(base + "/embed", {"x": x})
        self.assertEqual(status, 200, body)
        np.testing.assert_allclose(body["y"], mlp_ref(self.layers, np.array(x, np.float32)), rtol=1e-5, atol=1e-5)
        self.assertEqual(post(base + "/embed", {"x": [[1.0, 2.0]]})[0], 422)

    def node_or_skip(self):
        if not shutil.which("node") or not os.path.isdir("/usr/share/nodejs/redis"):
            self.skipTest("node or node-redis missing (scripts/setup installs them)")

    def test_node_client(self):
        self.node_or_skip()
        want = mlp_ref(self.layers, np.array([[1, 2, 3, 4]], np.float32))[0].tolist()
        p = subprocess.run(["node", "--test", os.path.join(NODE_CLIENT, "test")], capture_output=True, text=True,
                           env=dict(os.environ, GPUQ_REDIS=self.redis.url, GPUQ_MODEL_NAME="encoder",
                                    GPUQ_WANT=json.dumps(want), **NODE_ENV), timeout=120)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertRegex(p.stdout, r"# pass 1")

    def test_node_gateway(self):
        self.node_or_skip()
        port = free_port()
        p = self.start(["node", "gateway.js"], os.path.join(NODE_CLIENT, "examples"),
                       dict(NODE_ENV, GPUQ_REDIS=self.redis.url, GPUQ_MODEL_NAME="encoder", PORT=str(port)))
        base = f"http://127.0.0.1:{port}"
        wait_http(base + "/healthz", p)
        x = [[0.5, -1.0, 2.0, 0.0], [1, 1, 1, 1]]
        status, body = post(base + "/embed", {"x": x})
        self.assertEqual(status, 200, body)
        np.testing.assert_allclose(body["y"], mlp_ref(self.layers, np.array(x, np.float32)), rtol=1e-5, atol=1e-5)
        self.assertEqual(post(base + "/embed", {"x": [[1.0, 2.0]]})[0], 422)


if __name__ == "__main__":
    unittest.main()
