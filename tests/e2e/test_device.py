"""What a worker does when its device fails, with the faults injected into a
real backend (GPUQ_FAULT): a batch that does not fit in memory runs in
parts; a lost device fails only its batch, the worker exits 1 and another
worker finishes the rest. And the reduced-precision mlp."""
import time
import unittest

import msgpack
import numpy as np

from harness import BACKEND, WorkerTest, free_port, from_tensor, make_mlp, tensor
from test_metrics import get, metric, parse


def softmax(x):
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def bf16(a):
    """numpy rounding to bf16 (nearest, ties to even), as float64."""
    bits = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32).astype(np.uint64)
    bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
    return bits.astype(np.uint32).view(np.float32).astype(np.float64)


class DeviceFaults(WorkerTest):
    def setUp(self):
        super().setUp()
        self.rng = np.random.default_rng(5)
        self.reply = self.client.key("reply:dev")

    def enqueue_all(self, jobs):
        pipe = self.r.pipeline(transaction=True)
        for j in jobs:
            j["reply_to"] = self.reply
            pipe.xadd(self.client.key("jobs"), {"job": msgpack.packb(j, use_bin_type=True)})
        pipe.execute()

    def collect(self, n, timeout=20):
        out = {}
        while len(out) < n:
            res = self.client.wait(self.reply, timeout=timeout)
            out[res["id"]] = res
        return out

    def trouble(self, port):
        ms = parse(get(f"http://127.0.0.1:{port}/metrics")[1])
        return (metric(ms, "gpuq_batch_trouble_total", kind="split"),
                metric(ms, "gpuq_batch_trouble_total", kind="failed"))

    def test_out_of_memory_runs_in_parts(self):
        port = free_port()
        w = self.worker("--max-batch", "64", "--max-delay-us", "200000", "--metrics-addr",
                        f"127.0.0.1:{port}", env={"GPUQ_FAULT": "nomem-above=4"})
        xs = [self.rng.standard_normal((1 if i < 30 else 10, 7)).astype(np.float32) for i in range(31)]
        a = self.rng.standard_normal((6, 2, 3)).astype(np.float32)
        b = self.rng.standard_normal((3, 5)).astype(np.float32)
        jobs = [{"op": "softmax", "id": f"s{i}", "inputs": {"x": tensor(x)}} for i, x in enumerate(xs)]
        jobs.append({"op": "matmul", "id": "mm", "inputs": {"a": tensor(a), "b": tensor(b)}})
        self.enqueue_all(jobs)
        got = self.collect(len(jobs))
        for i, x in enumerate(xs):
            res = got[f"s{i}"]
            self.assertEqual(res["status"], "ok", res["error"])
            np.testing.assert_allclose(from_tensor(res["outputs"]["y"]), softmax(x), rtol=1e-5, atol=1e-7)
        self.assertEqual(got["mm"]["status"], "ok", got["mm"]["error"])
        np.testing.assert_allclose(from_tensor(got["mm"]["outputs"]["c"]), a @ b, rtol=1e-5, atol=1e-5)
        self.assertIn("does not fit", w.output())
        self.assertIn("running it in parts", w.output())
        # sizing buffers for --max-batch 64 did not fit either: a warning, not an exit
        self.assertIn("no room to size buffers for --max-batch 64", w.output())
        split, failed = self.trouble(port)
        self.assertGreaterEqual(split, 1)
        self.assertEqual(failed, 0)

    def test_out_of_memory_for_one_row_fails_that_job_only(self):
        port = free_port()
        w = self.worker("--metrics-addr", f"127.0.0.1:{port}", env={"GPUQ_FAULT": "nomem-above=0"})
        x = self.rng.standard_normal((1, 4)).astype(np.float32)
        for i in range(2):      # the worker keeps serving after the first
            self.enqueue_all([{"op": "softmax", "id": f"j{i}", "inputs": {"x": tensor(x)}}])
            res = self.collect(1)[f"j{i}"]
            self.assertEqual(res["status"], "error")
            self.assertEqual(res["error"]["code"], "internal")
            self.assertIn("out of memory", res["error"]["message"])
        self.assertIsNone(w.proc.poll())
        self.assertEqual(self.trouble(port)[1], 2)
        # acked: nothing waits for a retry
        self.assertEqual(self.r.xpending(self.client.key("jobs"), "workers")["pending"], 0)

    def test_lost_device_exits_1_and_loses_nothing(self):
        n = 40
        xs = [self.rng.standard_normal((1, 6)).astype(np.float32) for _ in range(n)]
        self.enqueue_all([{"op": "softmax", "id": f"j{i}", "inputs": {"x": tensor(x)}}
                          for i, x in enumerate(xs)])
        w = self.worker("--max-batch", "4", "--max-delay-us", "0", "--claim-idle-ms", "300",
                        env={"GPUQ_FAULT": "lost-after=2"})
        rc = w.proc.wait(timeout=20)
        log = w.output()
        self.assertEqual(rc, 1, log)
        self.assertIn("device is lost", log)
        first = self.collect(self.r.llen(self.reply))
        failed = [i for i, r in first.items() if r["status"] == "error"]
        ok = [i for i, r in first.items() if r["status"] == "ok"]
        self.assertEqual(len(ok), 8)            # the two batches before the loss
        self.assertEqual(len(failed), 4)        # only the batch on the device then
        for i in failed:
            self.assertEqual(first[i]["error"]["code"], "internal")
            self.assertIn("device lost", first[i]["error"]["message"])
        # what it held stays pending; a healthy worker claims and runs it
        self.assertGreater(self.r.xpending(self.client.key("jobs"), "workers")["pending"], 0)
        self.worker("--claim-idle-ms", "300")
        rest = self.collect(n - len(first), timeout=30)
        self.assertEqual(set(first) | set(rest), {f"j{i}" for i in range(n)})
        for i, res in rest.items():
            self.assertEqual(res["status"], "ok", res["error"])
            np.testing.assert_allclose(from_tensor(res["outputs"]["y"]), softmax(xs[int(i[1:])]),
                                       rtol=1e-5, atol=1e-7)

    def test_model_without_room_on_the_device_is_served_by_the_cpu(self):
        layers = make_mlp(self.path("m.safetensors"), [8, 16, 4], seed=4)
        w = self.worker("--model", f"m={self.path('m.safetensors')}", env={"GPUQ_FAULT": "model-nomem=1"})
        x = self.rng.standard_normal((3, 8)).astype(np.float32)
        reply = self.client.key("reply:cpu")
        self.client.enqueue({"op": "mlp", "model": "m", "inputs": {"x": tensor(x)}, "reply_to": reply})
        res = self.client.wait(reply, timeout=20)
        self.assertEqual(res["status"], "ok", res["error"])
        (w1, b1), (w2, b2) = layers
        np.testing.assert_allclose(from_tensor(res["outputs"]["y"]),
                                   np.maximum(x @ w1.T + b1, 0) @ w2.T + b2, rtol=1e-5, atol=1e-5)
        self.assertIn(f"--model m: not on the {BACKEND} backend (out of memory for the model", w.output())
        self.assertIn("its jobs run on the CPU backend", w.output())

    def test_a_model_the_device_refuses_leaves_the_others_there(self):
        """A model the device does not serve (here refused by the fault wrapper) sends that
        model's batches to the CPU backend; the op stays on the device for the other models."""
        la = make_mlp(self.path("a.safetensors"), [8, 16, 4], seed=4)
        lb = make_mlp(self.path("b.safetensors"), [8, 12, 4], seed=5)
        w = self.worker("--model", f"a={self.path('a.safetensors')}", "--model", f"b={self.path('b.safetensors')}",
                        env={"GPUQ_FAULT": "refuse-model=b"})
        x = self.rng.standard_normal((3, 8)).astype(np.float32)
        reply = self.client.key("reply:split")
        for name in ("a", "b"):
            self.client.enqueue({"op": "mlp", "model": name, "id": name, "inputs": {"x": tensor(x)}, "reply_to": reply})
        got = {r["id"]: r for r in (self.client.wait(reply, timeout=20) for _ in range(2))}
        for name, ((w1, b1), (w2, b2)) in (("a", la), ("b", lb)):
            self.assertEqual(got[name]["status"], "ok", got[name]["error"])
            np.testing.assert_allclose(from_tensor(got[name]["outputs"]["y"]),
                                       np.maximum(x @ w1.T + b1, 0) @ w2.T + b2, rtol=1e-5, atol=1e-5)
        log = w.output()
        self.assertIn(f"--model b: not on the {BACKEND} backend (this model is not served here", log)
        self.assertNotIn("--model a: not on the", log)
        self.assertNotIn("ops on the CPU backend", log)     # mlp stays on the device for a


class Precision(WorkerTest):
    def test_bf16_mlp(self):
        layers = make_mlp(self.path("m.safetensors"), [64, 128, 32], seed=3)
        x = np.random.default_rng(1).standard_normal((5, 64)).astype(np.float32)
        ys = {}
        for p in ["f32", "bf16"]:
            w = self.worker("--model", f"m={self.path('m.safetensors')}", "--precision", p)
            if p == "bf16":
                self.assertIn("precision bf16 for mlp and text encoders", w.output())
            res = self.client.wait(self.enqueue(x), timeout=20)
            self.assertEqual(res["status"], "ok", res["error"])
            ys[p] = from_tensor(res["outputs"]["y"])
            w.stop()
        # the reference rounds each layer's input and weights, sums in float64
        h = x
        for i, (wt, b) in enumerate(layers):
            h = bf16(h) @ bf16(wt).T + b
            if i < len(layers) - 1:
                h = np.maximum(h, 0)
        scale = np.abs(h).max()
        self.assertLess(np.abs(ys["bf16"] - h).max() / scale, 1e-2)
        # and it is not the f32 result
        self.assertGreater(np.abs(ys["bf16"] - ys["f32"]).max() / scale, 1e-4)

    def enqueue(self, x):
        reply = self.client.key("reply:p")
        self.client.enqueue({"op": "mlp", "model": "m", "inputs": {"x": tensor(x)}, "reply_to": reply})
        return reply


if __name__ == "__main__":
    unittest.main()
