"""knn, softmax, layernorm, image_preprocess and mixed-shape matmul through a
real worker, against numpy written from the protocol's definitions."""
import unittest

import msgpack
import numpy as np

from harness import WorkerTest, from_tensor, save_safetensors, tensor


def resize_ref(img, H, W):
    """Bilinear, half-pixel centers, edges clamped (OpenCV INTER_LINEAR), in float64."""
    h, w, _ = img.shape
    def coords(n_out, n_in):
        s = np.maximum((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0)
        i0 = np.minimum(np.floor(s).astype(int), n_in - 1)
        i1 = np.minimum(i0 + 1, n_in - 1)
        return i0, i1, s - i0
    y0, y1, fy = coords(H, h)
    x0, x1, fx = coords(W, w)
    img = img.astype(np.float64)
    top = img[y0][:, x0] * (1 - fx)[None, :, None] + img[y0][:, x1] * fx[None, :, None]
    bot = img[y1][:, x0] * (1 - fx)[None, :, None] + img[y1][:, x1] * fx[None, :, None]
    return top * (1 - fy)[:, None, None] + bot * fy[:, None, None]


class Ops(WorkerTest):
    def setUp(self):
        super().setUp()
        self.rng = np.random.default_rng(11)
        self.emb = self.rng.standard_normal((500, 24)).astype(np.float32)
        save_safetensors(self.path("ix.safetensors"), {"embeddings": self.emb})
        self.worker("--model", f"ix={self.path('ix.safetensors')}")
        self.reply = self.client.key("reply:ops")

    def run_jobs(self, jobs):
        """Enqueues all in one transaction, so the worker sees them together
        and they can share batches; collects results by id."""
        pipe = self.r.pipeline(transaction=True)
        for i, j in enumerate(jobs):
            j.setdefault("id", f"j{i}")
            j["reply_to"] = self.reply
            pipe.xadd(self.client.key("jobs"), {"job": msgpack.packb(j)})
        pipe.execute()
        out = {}
        for _ in jobs:
            r = self.client.wait(self.reply)
            out[r["id"]] = r
        return [out[j["id"]] for j in jobs]

    def test_knn_metrics(self):
        e = self.emb.astype(np.float64)
        jobs, want = [], []
        for metric in ("cosine", "dot", "l2"):
            for rows, k in ((1, 1), (4, 10), (3, 500)):
                q = self.rng.standard_normal((rows, 24)).astype(np.float32)
                qd = q.astype(np.float64)
                if metric == "dot":
                    s = qd @ e.T
                elif metric == "cosine":
                    s = (qd / np.linalg.norm(qd, axis=1, keepdims=True)) @ (e / np.linalg.norm(e, axis=1, keepdims=True)).T
                else:
                    s = ((qd[:, None, :] - e[None]) ** 2).sum(-1)
                order = np.argsort(s if metric == "l2" else -s, axis=1, kind="stable")[:, :k]
                jobs.append({"op": "knn", "model": "ix", "inputs": {"q": tensor(q)},
                             "params": {"k": k, "metric": metric}})
                want.append((order, np.take_along_axis(s, order, 1)))
        for res, (idx, sc) in zip(self.run_jobs(jobs), want):
            self.assertEqual(res["status"], "ok", res.get("error"))
            self.assertEqual(res["outputs"]["indices"]["dtype"], "i64")
            np.testing.assert_array_equal(from_tensor(res["outputs"]["indices"]), idx)
            np.testing.assert_allclose(from_tensor(res["outputs"]["scores"]), sc, rtol=1e-4, atol=1e-3)

    def test_knn_bad_params(self):
        q = tensor(np.zeros((1, 24), np.float32))
        res = self.run_jobs([
            {"op": "knn", "model": "ix", "inputs": {"q": q}, "params": {"k": 501}},
            {"op": "knn", "model": "ix", "inputs": {"q": q}, "params": {"k": 0}},
            {"op": "knn", "model": "ix", "inputs": {"q": q}, "params": {"metric": "manhattan"}},
            {"op": "knn", "model": "nope", "inputs": {"q": q}},
            {"op": "knn", "model": "ix", "inputs": {"q": tensor(np.zeros((1, 23), np.float32))}},
        ])
        self.assertEqual([r["error"]["code"] for r in res],
                         ["bad_request", "bad_request", "bad_request", "unknown_model", "shape_mismatch"])
        self.assertIn("k", res[0]["error"]["message"])

    def test_knn_rejects_non_finite_queries(self):
        """A query row holding NaN or infinity has no nearest neighbours: the
        job is a bad request, and the finite job beside it is answered."""
        good = self.rng.standard_normal((2, 24)).astype(np.float32)
        jobs = []
        for bad, dtype in [(np.nan, np.float32), (np.inf, np.float32), (-np.inf, np.float16), (np.nan, np.float64)]:
            q = good.astype(dtype)
            q[1, 5] = bad
            jobs.append({"op": "knn", "model": "ix", "inputs": {"q": tensor(q)}})
        jobs.append({"op": "knn", "model": "ix", "inputs": {"q": tensor(good)}, "params": {"k": 3}})
        res = self.run_jobs(jobs)
        for r in res[:4]:
            self.assertEqual(r["status"], "error", r)
            self.assertEqual(r["error"]["code"], "bad_request")
            self.assertIn("finite", r["error"]["message"])
        self.assertEqual(res[4]["status"], "ok", res[4].get("error"))
        self.assertEqual(from_tensor(res[4]["outputs"]["indices"]).shape, (2, 3))

    def test_softmax_and_layernorm(self):
        jobs, want = [], []
        for rows, cols in ((1, 1), (3, 7), (5, 7), (2, 300)):
            x = (self.rng.standard_normal((rows, cols)) * 10).astype(np.float32)
            e = np.exp(x - x.max(1, keepdims=True))
            jobs.append({"op": "softmax", "inputs": {"x": tensor(x)}})
            want.append(e / e.sum(1, keepdims=True))
            g = self.rng.standard_normal(cols).astype(np.float32)
            b = self.rng.standard_normal(cols).astype(np.float32)
            for inputs, eps in (({"x": tensor(x)}, None), ({"x": tensor(x), "gamma": tensor(g), "beta": tensor(b)}, 0.1)):
                xd = x.astype(np.float64)
                n = (xd - xd.mean(1, keepdims=True)) / np.sqrt(xd.var(1, keepdims=True) + (eps or 1e-5))
                if "gamma" in inputs:
                    n = n * g + b
                jobs.append({"op": "layernorm", "inputs": inputs, "params": {"eps": eps} if eps else {}})
                want.append(n)
        for res, w in zip(self.run_jobs(jobs), want):
            self.assertEqual(res["status"], "ok", res.get("error"))
            np.testing.assert_allclose(from_tensor(res["outputs"]["y"]), w, rtol=1e-4, atol=1e-5)

    def test_image_preprocess(self):
        jobs, want = [], []
        for (h, w, c), (H, W) in (((32, 48, 3), (16, 16)), ((5, 7, 3), (20, 9)), ((9, 9, 1), (9, 9)),
                                  ((1, 1, 3), (4, 4)), ((100, 30, 4), (33, 61))):
            img = self.rng.integers(0, 256, (h, w, c), dtype=np.uint8)
            mean = list(self.rng.uniform(0, 1, c))
            std = list(self.rng.uniform(0.2, 2, c))
            jobs.append({"op": "image_preprocess", "inputs": {"image": tensor(img)},
                         "params": {"height": H, "width": W, "mean": mean, "std": std}})
            r = resize_ref(img, H, W) / 255.0
            want.append(((r - np.array(mean)) / np.array(std)).transpose(2, 0, 1))
        img = tensor(np.zeros((4, 4, 3), np.uint8))
        bad = [{"op": "image_preprocess", "inputs": {"image": img}, "params": {"height": 4}},
               {"op": "image_preprocess", "inputs": {"image": img}, "params": {"height": 4, "width": 4, "std": [1, 0, 1]}},
               {"op": "image_preprocess", "inputs": {"image": img}, "params": {"height": 4, "width": 4, "mean": [1, 2]}},
               {"op": "image_preprocess", "inputs": {"image": tensor(np.zeros((4, 4, 3), np.float32))},
                "params": {"height": 4, "width": 4}}]
        res = self.run_jobs(jobs + bad)
        for r, w in zip(res, want):
            self.assertEqual(r["status"], "ok", r.get("error"))
            y = from_tensor(r["outputs"]["y"])
            self.assertEqual(y.shape, w.shape)
            np.testing.assert_allclose(y, w, rtol=1e-4, atol=1e-4)
        self.assertTrue(all(r["status"] == "error" for r in res[len(jobs):]))
        self.assertEqual(max(r["timing"]["batch_size"] for r in res[:len(jobs)]), len(jobs),
                         "images of different sizes should share one batch")

    def test_mixed_shape_matmul_in_one_batch(self):
        jobs, want = [], []
        for i, (m, k, n) in enumerate([(2, 3, 4), (5, 3, 1), (2, 3, 4), (7, 8, 9), (1, 1, 1), (3, 2, 2)]):
            a = self.rng.standard_normal((2, m, k) if i % 2 else (m, k)).astype(np.float32)
            b = self.rng.standard_normal((k, n)).astype(np.float16)
            jobs.append({"op": "matmul", "inputs": {"a": tensor(a), "b": tensor(b)}})
            want.append(np.matmul(a.astype(np.float64), b.astype(np.float64)))
        res = self.run_jobs(jobs)
        for r, w in zip(res, want):
            self.assertEqual(r["status"], "ok", r.get("error"))
            np.testing.assert_allclose(from_tensor(r["outputs"]["c"]), w, rtol=1e-4, atol=1e-4)

    def test_broadcast_matmul_counts_the_shared_operand_once(self):
        # b [1024, 1024] beside a [2049, 1, 1024]: 2^31 + 2^20 elements if b
        # counted once per matrix, 2^20 as it is; a broadcast a likewise
        a = self.rng.standard_normal((2049, 1, 1024)).astype(np.float16)
        b = self.rng.standard_normal((1024, 1024)).astype(np.float16)
        a2 = self.rng.standard_normal((3, 4)).astype(np.float32)
        b2 = self.rng.standard_normal((5, 4, 6)).astype(np.float32)
        res = self.run_jobs([
            {"op": "matmul", "inputs": {"a": tensor(a), "b": tensor(b)}},
            {"op": "matmul", "inputs": {"a": tensor(a2), "b": tensor(b2)}},
            {"op": "matmul", "inputs": {"a": tensor(a2.T.copy()), "b": tensor(b2)},
             "params": {"trans_a": True}}])
        wants = [np.matmul(a.astype(np.float64), b.astype(np.float64)),
                 np.matmul(a2.astype(np.float64), b2.astype(np.float64))]
        for r, w in zip(res, wants + wants[1:]):
            self.assertEqual(r["status"], "ok", r.get("error"))
            np.testing.assert_allclose(from_tensor(r["outputs"]["c"]), w, rtol=1e-3, atol=1e-3)


if __name__ == "__main__":
    unittest.main()
