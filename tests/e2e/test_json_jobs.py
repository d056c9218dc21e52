"""A client that speaks only JSON (no msgpack anywhere): jobs in the field
`json` with base64 tensor data, results back as JSON text."""
import base64
import json
import time
import unittest

import numpy as np

from harness import WorkerTest, make_mlp, mlp_ref


def b64(a):
    return base64.b64encode(np.ascontiguousarray(a).tobytes()).decode()


class JsonJobs(WorkerTest):
    def setUp(self):
        super().setUp()
        self.layers = make_mlp(self.path("m.safetensors"), [4, 8, 2])
        self.worker("--model", f"m={self.path('m.safetensors')}")
        self.jobs = "gpuq:{default}:jobs"
        self.reply = "gpuq:{default}:reply:json"

    def send(self, obj_or_text):
        text = obj_or_text if isinstance(obj_or_text, str) else json.dumps(obj_or_text)
        return self.r.xadd(self.jobs, {"json": text}).decode()

    def wait(self):
        item = self.r.blpop([self.reply], timeout=20)
        self.assertIsNotNone(item)
        return json.loads(item[1])     # JSON text, not msgpack

    def test_mlp_and_matmul(self):
        x = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
        self.send({"op": "mlp", "model": "m", "id": "j1", "reply_to": self.reply, "meta": {"user": "u1"},
                   "inputs": {"x": {"dtype": "f32", "shape": [3, 4], "data": b64(x)}}})
        res = self.wait()
        self.assertEqual((res["id"], res["status"], res["meta"]), ("j1", "ok", {"user": "u1"}))
        y = res["outputs"]["y"]
        got = np.frombuffer(base64.b64decode(y["data"]), np.float32).reshape(y["shape"])
        np.testing.assert_allclose(got, mlp_ref(self.layers, x), rtol=1e-5, atol=1e-5)
        stored = json.loads(self.r.get("gpuq:{default}:result:j1"))
        self.assertEqual(stored["outputs"]["y"]["data"], y["data"])

        a, b = np.eye(2, dtype=np.float16), np.arange(4, dtype=np.float16).reshape(2, 2)
        self.send({"op": "matmul", "reply_to": self.reply, "params": {"alpha": 2.0, "trans_b": True},
                   "inputs": {"a": {"dtype": "f16", "shape": [2, 2], "data": b64(a)},
                              "b": {"dtype": "f16", "shape": [2, 2], "data": b64(b)}}})
        res = self.wait()
        c = res["outputs"]["c"]
        np.testing.assert_allclose(np.frombuffer(base64.b64decode(c["data"]), np.float32).reshape(2, 2),
                                   2 * b.T.astype(np.float32))

    def test_errors(self):
        self.send({"op": "mlp", "model": "m", "id": "bad64", "reply_to": self.reply,
                   "inputs": {"x": {"dtype": "f32", "shape": [1, 4], "data": "not base64!"}}})
        res = self.wait()
        self.assertEqual(res["status"], "error")
        self.assertEqual(res["error"]["code"], "bad_request")
        self.assertIsNone(res["outputs"] or None)
        entry = self.send("{not json")
        self.send("[1, 2]")
        deadline = time.time() + 10
        while self.r.xlen("gpuq:{default}:dead") < 2 and time.time() < deadline:
            time.sleep(0.02)
        dead = self.r.xrange("gpuq:{default}:dead")
        self.assertEqual([d[1][b"job"] for d in dead], [b"{not json", b"[1, 2]"])
        self.assertTrue(entry)


if __name__ == "__main__":
    unittest.main()
