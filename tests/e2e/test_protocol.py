"""End to end: a real worker on a real Redis, driven by a client written from
the protocol: correct results, error results, dead letters, keys and TTLs."""
import time
import unittest

import msgpack
import numpy as np

from harness import WorkerTest, from_tensor, make_mlp, mlp_ref, tensor


class MatmulAndMlp(WorkerTest):
    def setUp(self):
        super().setUp()
        self.layers = make_mlp(self.path("mlp.safetensors"), [24, 40, 12], seed=1)
        self.worker("--model", f"small={self.path('mlp.safetensors')}")
        self.rng = np.random.default_rng(7)

    def run_job(self, job):
        job.setdefault("reply_to", self.client.key("reply:t"))
        self.client.enqueue(job)
        return self.client.wait(job["reply_to"])

    def test_mlp_matches_numpy(self):
        for rows in (1, 3, 17):
            x = self.rng.standard_normal((rows, 24)).astype(np.float32)
            res = self.run_job({"op": "mlp", "model": "small", "inputs": {"x": tensor(x)}, "id": f"m{rows}"})
            self.assertEqual(res["status"], "ok", res.get("error"))
            self.assertEqual(res["id"], f"m{rows}")
            y = from_tensor(res["outputs"]["y"])
            self.assertEqual(y.shape, (rows, 12))
            np.testing.assert_allclose(y, mlp_ref(self.layers, x), rtol=1e-4, atol=1e-4)
            t = res["timing"]
            self.assertGreaterEqual(t["batch_size"], rows)
            self.assertGreaterEqual(t["total_us"], t["compute_us"])
            self.assertTrue(res["worker"])

    def test_mlp_half_inputs(self):
        x = self.rng.standard_normal((5, 24)).astype(np.float32)
        for enc, xq in ((tensor(x.astype(np.float16)), x.astype(np.float16).astype(np.float32)),
                        (tensor(x, "bf16"), (x.view(np.uint32) & 0xFFFF0000).view(np.float32))):
            res = self.run_job({"op": "mlp", "model": "small", "inputs": {"x": enc}})
            self.assertEqual(res["status"], "ok", res.get("error"))
            np.testing.assert_allclose(from_tensor(res["outputs"]["y"]), mlp_ref(self.layers, xq),
                                       rtol=1e-4, atol=1e-4)

    def test_matmul_shapes(self):
        cases = [((4, 6), (6, 5), {}), ((3, 4, 6), (6, 5), {}), ((3, 4, 6), (3, 6, 5), {}),
                 ((4, 6), (2, 6, 5), {}), ((6, 4), (6, 5), {"trans_a": True}),
                 ((4, 6), (5, 6), {"trans_b": True, "alpha": 0.25}),
                 ((2, 6, 4), (2, 5, 6), {"trans_a": True, "trans_b": True, "alpha": -2.0})]
        for sa, sb, params in cases:
            a = self.rng.standard_normal(sa).astype(np.float32)
            b = self.rng.standard_normal(sb).astype(np.float32)
            res = self.run_job({"op": "matmul", "inputs": {"a": tensor(a), "b": tensor(b)}, "params": params})
            self.assertEqual(res["status"], "ok", (sa, sb, params, res.get("error")))
            ea = np.swapaxes(a, -1, -2) if params.get("trans_a") else a
            eb = np.swapaxes(b, -1, -2) if params.get("trans_b") else b
            want = params.get("alpha", 1.0) * np.matmul(ea.astype(np.float64), eb)
            c = from_tensor(res["outputs"]["c"])
            self.assertEqual(c.shape, want.shape)
            np.testing.assert_allclose(c, want, rtol=1e-4, atol=1e-4)

    def test_matmul_f64_input(self):
        a = self.rng.standard_normal((3, 3))
        res = self.run_job({"op": "matmul", "inputs": {"a": tensor(a), "b": tensor(np.eye(3))}})
        self.assertEqual(res["outputs"]["c"]["dtype"], "f32")
        np.testing.assert_allclose(from_tensor(res["outputs"]["c"]), a, rtol=1e-6)

    def test_keys_ttl_meta_and_default_id(self):
        x = self.rng.standard_normal((1, 24)).astype(np.float32)
        meta = {"user": 42, "tags": ["a", "b"], "nested": {"ok": True}}
        reply = self.client.key("reply:k")
        entry = self.client.enqueue({"op": "mlp", "model": "small", "inputs": {"x": tensor(x)},
                                     "reply_to": reply, "meta": meta})
        for _ in range(500):
            if self.r.llen(reply):
                break
            time.sleep(0.01)
        self.assertTrue(3500 < self.r.ttl(reply) <= 3600)   # the reply list expires too
        res = self.client.wait(reply)
        self.assertEqual(res["id"], entry)          # id defaults to the stream entry id
        self.assertEqual(res["meta"], meta)         # echoed untouched
        stored = self.client.result(entry)
        self.assertEqual(stored["outputs"]["y"]["data"], res["outputs"]["y"]["data"])
        ttl = self.r.ttl(self.client.key(f"result:{entry}"))
        self.assertTrue(3500 < ttl <= 3600, ttl)
        # result_ttl 0: no result key, but the reply list still gets it
        self.client.enqueue({"op": "mlp", "model": "small", "inputs": {"x": tensor(x)}, "id": "nokey",
                             "result_ttl": 0, "reply_to": reply})
        self.assertEqual(self.client.wait(reply)["status"], "ok")
        self.assertIsNone(self.client.result("nokey"))
        # a job's own result_ttl, and polling without reply_to
        self.client.enqueue({"op": "mlp", "model": "small", "inputs": {"x": tensor(x)}, "id": "short",
                             "result_ttl": 60})
        for _ in range(200):
            if self.client.result("short"):
                break
            time.sleep(0.02)
        self.assertEqual(self.client.result("short")["status"], "ok")
        self.assertTrue(0 < self.r.ttl(self.client.key("result:short")) <= 60)

    def test_deadlines(self):
        x = tensor(np.zeros((1, 24), np.float32))
        res = self.run_job({"op": "mlp", "model": "small", "inputs": {"x": x},
                            "deadline_ms": int(time.time() * 1000) - 1000})
        self.assertEqual(res["status"], "error")
        self.assertEqual(res["error"]["code"], "deadline_exceeded")
        res = self.run_job({"op": "mlp", "model": "small", "inputs": {"x": x},
                            "deadline_ms": int(time.time() * 1000) + 60000, "timeout_ms": 60000})
        self.assertEqual(res["status"], "ok")


class BadJobs(WorkerTest):
    """Bad jobs enqueued beside good ones, before the worker starts, so they
    share a batch: each bad one gets its own error, the good ones succeed."""

    def test_bad_jobs_do_not_poison_the_batch(self):
        layers = make_mlp(self.path("m.safetensors"), [8, 16, 4], seed=3)
        rng = np.random.default_rng(0)
        reply = self.client.key("reply:mixed")
        good = {}
        x8 = tensor(np.zeros((1, 8), np.float32))

        def job(i, **kw):
            j = {"op": "mlp", "model": "m", "inputs": {"x": x8}, "id": f"bad{i}", "reply_to": reply}
            j.update(kw)
            return j

        bad = [  # (job, expected code)
            (job(0, op="fft"), "unknown_op"),
            (job(1, model="nope"), "unknown_model"),
            (job(2, inputs={"x": tensor(np.zeros((1, 9), np.float32))}), "shape_mismatch"),
            (job(3, inputs={"x": {"dtype": "f32", "shape": [1, 8], "data": b"\0" * 31}}), "bad_request"),
            (job(4, inputs={"x": {"dtype": "f33", "shape": [1, 8], "data": b"\0" * 32}}), "bad_request"),
            (job(5, inputs={"x": {"dtype": "f32", "shape": [-1, 8], "data": b"\0" * 32}}), "bad_request"),
            (job(6, inputs={"x": {"dtype": "f32", "shape": [2**40, 2**40], "data": b"\0" * 32}}), "bad_request"),
            (job(7, inputs={"x": {"dtype": "f32", "shape": [1, 8], "data": "text"}}), "bad_request"),
            (job(8, inputs={"y": x8}), "bad_request"),
            (job(9, inputs=[1, 2]), "bad_request"),
            (job(10, deadline_ms="soon"), "bad_request"),
            (job(11, op="matmul", inputs={"a": tensor(np.zeros((2, 3), np.float32)),
                                          "b": tensor(np.zeros((4, 2), np.float32))}), "shape_mismatch"),
            (job(12, op="matmul", inputs={"a": tensor(np.zeros((2, 3), np.int32)),
                                          "b": tensor(np.zeros((3, 2), np.int32))}), "bad_request"),
            (job(13, model=None), "bad_request"),
            (job(14, unexpected=1), "bad_request"),
            (job(15, params={"prompt": "query: "}), "bad_request"),     # a param mlp does not know
            (job(16, op="matmul", inputs={"a": tensor(np.zeros((2, 3), np.float32)),
                                          "b": tensor(np.zeros((3, 2), np.float32))},
                 params={"alpha": 2.0, "transpose_a": True}), "bad_request"),
        ]
        for i in range(20):
            x = rng.standard_normal((1 + i % 3, 8)).astype(np.float32)
            j = {"op": "mlp", "model": "m", "inputs": {"x": tensor(x)}, "id": f"good{i}", "reply_to": reply}
            good[f"good{i}"] = x
            self.client.enqueue(j)
            if i < len(bad):
                self.client.enqueue(bad[i][0])
        undecodable = [b"not msgpack at all", msgpack.packb([1, 2, 3]), b"\xdd\xff\xff\xff\xff"]
        dead_ids = [self.client.enqueue(None, raw=u) for u in undecodable]
        dead_ids.append(self.r.xadd(self.client.key("jobs"), {"other": "field"}).decode())

        self.worker("--model", f"m={self.path('m.safetensors')}")
        results = {}
        for _ in range(len(good) + len(bad)):
            res = self.client.wait(reply)
            results[res["id"]] = res
        for i, (_, code) in enumerate(bad):
            res = results[f"bad{i}"]
            self.assertEqual(res["status"], "error", res)
            self.assertEqual(res["error"]["code"], code, res["error"])
            self.assertTrue(res["error"]["message"])
        self.assertIn("takes no param 'prompt'", results["bad15"]["error"]["message"])
        self.assertIn("'transpose_a'", results["bad16"]["error"]["message"])
        batch_sizes = set()
        for jid, x in good.items():
            res = results[jid]
            self.assertEqual(res["status"], "ok", res.get("error"))
            np.testing.assert_allclose(from_tensor(res["outputs"]["y"]), mlp_ref(layers, x), rtol=1e-4, atol=1e-4)
            batch_sizes.add(res["timing"]["batch_size"])
        self.assertGreater(max(batch_sizes), 3, "good jobs should have shared a batch")

        for _ in range(200):
            if self.r.xlen(self.client.key("dead")) == len(dead_ids):
                break
            time.sleep(0.02)
        dead = self.r.xrange(self.client.key("dead"))
        self.assertEqual(len(dead), len(dead_ids))
        self.assertEqual([d[1][b"job"] for d in dead], undecodable + [b""])
        for _, fields in dead:
            err = msgpack.unpackb(fields[b"error"])
            self.assertEqual(err["code"], "bad_request")
            self.assertEqual(fields[b"attempts"], b"1")
        pending = self.r.xpending(self.client.key("jobs"), "workers")
        self.assertEqual(pending["pending"], 0)

    def test_batches_respect_max_batch_rows(self):
        make_mlp(self.path("m.safetensors"), [4, 4], seed=3)
        reply = self.client.key("reply:mb")
        for i in range(30):
            self.client.enqueue({"op": "mlp", "model": "m", "inputs": {"x": tensor(np.ones((1 + i % 2, 4), np.float32))},
                                 "reply_to": reply})
        self.worker("--model", f"m={self.path('m.safetensors')}", "--max-batch", "5")
        sizes = [self.client.wait(reply)["timing"]["batch_size"] for _ in range(30)]
        self.assertLessEqual(max(sizes), 5)
        self.assertGreaterEqual(max(sizes), 4)


if __name__ == "__main__":
    unittest.main()


class ResultSize(WorkerTest):
    """A job whose result would exceed --max-result-bytes is answered
    too_large at admission, from its input shapes and params, before any
    compute or allocation."""

    def image_job(self, jid, h, w):
        img = tensor(np.zeros((1, 1, 1), np.uint8))
        return {"op": "image_preprocess", "inputs": {"image": img}, "id": jid,
                "params": {"height": h, "width": w}, "reply_to": self.client.key("reply:size")}

    def test_default_limit_refuses_a_huge_image_at_once(self):
        self.worker()
        t0 = time.monotonic()
        self.client.enqueue(self.image_job("huge", 12000, 12000))   # 576 MB of f32
        self.client.enqueue(self.image_job("small", 4, 4))
        res = {}
        for _ in range(2):
            r = self.client.wait(self.client.key("reply:size"))
            res[r["id"]] = r
        self.assertLess(time.monotonic() - t0, 3.0)
        self.assertEqual(res["huge"]["status"], "error", res["huge"])
        self.assertEqual(res["huge"]["error"]["code"], "too_large")
        self.assertIn("67108864", res["huge"]["error"]["message"])
        self.assertEqual(res["small"]["status"], "ok", res["small"].get("error"))

    def test_limit_from_flag_and_environment(self):
        reply = self.client.key("reply:size")

        def softmax(jid, rows):
            return {"op": "softmax", "inputs": {"x": tensor(np.zeros((rows, 32), np.float32))},
                    "id": jid, "reply_to": reply}

        for args, env in [(("--max-result-bytes", "4096"), None), ((), {"GPUQ_MAX_RESULT_BYTES": "4096"})]:
            w = self.worker(*args, env=env)
            self.client.enqueue(softmax("fits", 32))      # 32 x 32 f32: exactly 4096 bytes
            self.client.enqueue(softmax("over", 33))
            res = {}
            for _ in range(2):
                r = self.client.wait(reply)
                res[r["id"]] = r
            self.assertEqual(res["fits"]["status"], "ok", res["fits"].get("error"))
            self.assertEqual(res["over"]["error"]["code"], "too_large", res["over"])
            w.stop()
