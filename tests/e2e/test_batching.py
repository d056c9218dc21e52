"""The scheduler through a real worker: results independent of --max-batch,
oversize jobs chunked, priorities, models and dtypes never mixed, and the
in-flight bound holding under a backlog (asserted on Redis's pending count,
not on time)."""
import threading
import time
import unittest

import numpy as np

from harness import WorkerTest, from_tensor, make_mlp, mlp_ref, save_safetensors, tensor


class Batching(WorkerTest):
    def setUp(self):
        super().setUp()
        self.layers = make_mlp(self.path("a.safetensors"), [6, 16, 5], seed=1)
        self.layers_b = make_mlp(self.path("b.safetensors"), [6, 16, 5], seed=2)
        self.rng = np.random.default_rng(5)
        self.reply = self.client.key("reply:b")

    def models(self):
        return ["--model", f"a={self.path('a.safetensors')}", "--model", f"b={self.path('b.safetensors')}"]

    def collect(self, n):
        out = {}
        for _ in range(n):
            r = self.client.wait(self.reply)
            out[r["id"]] = r
        return out

    def test_results_do_not_depend_on_max_batch(self):
        jobs = []
        for i in range(12):
            rows = [1, 3, 20][i % 3]
            jobs.append({"op": "mlp", "model": "a", "inputs": {"x": tensor(self.rng.standard_normal((rows, 6)).astype(np.float32))}})
            jobs.append({"op": "matmul", "inputs": {"a": tensor(self.rng.standard_normal((5, 3, 4)).astype(np.float32)),
                                                    "b": tensor(self.rng.standard_normal((4, 2)).astype(np.float32))}})
            jobs.append({"op": "softmax", "inputs": {"x": tensor(self.rng.standard_normal((rows, 9)).astype(np.float32))}})
        runs = []
        for max_batch in (1, 7, 256):
            for i, j in enumerate(jobs):
                j.update(id=f"{max_batch}-{i}", reply_to=self.reply)
                self.client.enqueue(j)
            w = self.worker(*self.models(), "--max-batch", str(max_batch), "--max-inflight", "512")
            res = self.collect(len(jobs))
            self.assertEqual(w.stop(), 0)
            for r in res.values():
                self.assertEqual(r["status"], "ok", r.get("error"))
                # a 3-row matrix is never split, so it may exceed a batch of 1
                self.assertLessEqual(r["timing"]["batch_size"], max(max_batch, 3))
            runs.append([res[f"{max_batch}-{i}"] for i in range(len(jobs))])
        for a, b, c in zip(*runs):
            for name in a["outputs"]:
                x, y, z = (from_tensor(r["outputs"][name]) for r in (a, b, c))
                np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)
                np.testing.assert_allclose(x, z, rtol=1e-5, atol=1e-6)
        x = from_tensor(jobs[6]["inputs"]["x"])
        np.testing.assert_allclose(from_tensor(runs[0][6]["outputs"]["y"]), mlp_ref(self.layers, x), rtol=1e-4, atol=1e-4)

    def test_oversize_job_is_chunked(self):
        x = self.rng.standard_normal((50, 6)).astype(np.float32)
        self.worker(*self.models(), "--max-batch", "8")
        self.client.enqueue({"op": "mlp", "model": "a", "inputs": {"x": tensor(x)}, "reply_to": self.reply, "id": "big"})
        r = self.client.wait(self.reply)
        self.assertEqual(r["status"], "ok", r.get("error"))
        self.assertEqual(r["timing"]["batch_size"], 8)
        np.testing.assert_allclose(from_tensor(r["outputs"]["y"]), mlp_ref(self.layers, x), rtol=1e-4, atol=1e-4)

    def test_an_idle_worker_runs_a_lone_job_at_once(self):
        """With nothing else waiting and the backend idle, a job does not wait
        out --max-delay-us (10 s here): the worker's own queue time says so."""
        self.worker(*self.models(), "--max-delay-us", "10000000")
        x = tensor(np.ones((1, 6), np.float32))
        for i in range(3):
            self.client.enqueue({"op": "mlp", "model": "a", "inputs": {"x": x}, "id": f"lone{i}",
                                 "reply_to": self.reply})
            r = self.client.wait(self.reply, timeout=30)
            self.assertEqual(r["status"], "ok", r.get("error"))
            self.assertLess(r["timing"]["queue_us"], 1_000_000, r["timing"])

    def test_priority_first(self):
        x = tensor(np.ones((1, 6), np.float32))
        for i in range(30):
            self.client.enqueue({"op": "mlp", "model": "a", "inputs": {"x": x}, "id": f"low{i}", "reply_to": self.reply})
        for i in range(30):
            self.client.enqueue({"op": "mlp", "model": "a", "inputs": {"x": x}, "id": f"high{i}",
                                 "priority": 5, "reply_to": self.reply})
        self.worker(*self.models(), "--max-batch", "5", "--max-inflight", "100")
        order = [self.client.wait(self.reply)["id"] for _ in range(60)]
        self.assertTrue(all(i.startswith("high") for i in order[:30]), order)

    def test_models_and_dtypes_never_mix(self):
        rows = {"a": 0, "b": 0, "a16": 0}
        for i in range(24):
            kind = ["a", "b", "a16"][i % 3]
            n = 1 + i % 4
            rows[kind] += n
            x = self.rng.standard_normal((n, 6)).astype(np.float16 if kind == "a16" else np.float32)
            self.client.enqueue({"op": "mlp", "model": kind[0], "inputs": {"x": tensor(x)}, "id": f"{kind}-{i}",
                                 "reply_to": self.reply})
        self.worker(*self.models(), "--max-batch", "256")
        res = self.collect(24)
        for jid, r in res.items():
            self.assertEqual(r["timing"]["batch_size"], rows[jid.split("-")[0]], jid)

    def test_inflight_bound_under_backlog(self):
        x = tensor(np.ones((1, 6), np.float32))
        n = 3000
        pipe = self.r.pipeline(transaction=False)
        for i in range(n):
            pipe.xadd(self.client.key("jobs"), {"job": __import__("msgpack").packb(
                {"op": "mlp", "model": "a", "inputs": {"x": x}, "result_ttl": 0, "reply_to": self.reply})})
        pipe.execute()
        seen, stop = [], threading.Event()

        def sample():
            import redis
            r = redis.Redis(port=self.redis.port)
            while not stop.is_set():
                try:
                    seen.append(r.xpending(self.client.key("jobs"), "workers")["pending"])
                except redis.ResponseError:
                    pass    # the group is not there yet
                time.sleep(0.001)

        th = threading.Thread(target=sample)
        th.start()
        self.worker(*self.models(), "--max-batch", "16", "--max-inflight", "64")
        got = 0
        while got < n:
            self.assertIsNotNone(self.r.blpop([self.reply], timeout=30))
            got += 1
        stop.set()
        th.join()
        self.assertGreater(len(seen), 10)
        self.assertGreater(max(seen), 0)
        self.assertLessEqual(max(seen), 64, "the worker held more than --max-inflight rows")
        self.assertEqual(self.r.xpending(self.client.key("jobs"), "workers")["pending"], 0)

    def test_expired_jobs_never_run(self):
        x = tensor(np.ones((1, 6), np.float32))
        for i in range(5):
            self.client.enqueue({"op": "mlp", "model": "a", "inputs": {"x": x}, "id": f"late{i}",
                                 "timeout_ms": 1, "reply_to": self.reply})
        self.client.enqueue({"op": "mlp", "model": "a", "inputs": {"x": x}, "id": "fine",
                             "timeout_ms": 60000, "reply_to": self.reply})
        time.sleep(0.05)
        self.worker(*self.models())
        res = self.collect(6)
        for i in range(5):
            self.assertEqual(res[f"late{i}"]["error"]["code"], "deadline_exceeded")
            self.assertEqual(res[f"late{i}"]["timing"]["batch_size"], 0)
        self.assertEqual(res["fine"]["status"], "ok")
        self.assertEqual(res["fine"]["timing"]["batch_size"], 1)


if __name__ == "__main__":
    unittest.main()
