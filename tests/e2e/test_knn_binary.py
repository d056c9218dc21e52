"""Binary knn through a real worker, against numpy written from the
protocol's definitions: packed-bit queries (u8 "ubinary", i8 "binary" as
sentence-transformers' quantize_embeddings gives them) ranked by Hamming
distance against the index's sign bits or its own `binary` tensor, float
queries with `rescore`, and hostile jobs beside good ones."""
import subprocess
import unittest

import msgpack
import numpy as np

from harness import GPUQ, WorkerTest, from_tensor, save_safetensors, tensor


def ubinary(x):
    return np.packbits(x > 0, axis=-1)


def binary(x):
    return (ubinary(x).astype(np.int16) - 128).astype(np.int8)


def hamming(qbits, ixbits):
    """Distances [rows, N] between packed u8 rows."""
    x = np.bitwise_xor(qbits[:, None, :], ixbits[None, :, :])
    return np.unpackbits(x, axis=-1).sum(-1)


def hamming_knn(qbits, ixbits, k):
    d = hamming(qbits, ixbits)
    order = np.argsort(d, axis=1, kind="stable")[:, :k]    # ties to the lower index
    return order, np.take_along_axis(d, order, 1).astype(np.float32)


def metric_scores(q, e, metric):
    q, e = q.astype(np.float64), e.astype(np.float64)
    if metric == "dot":
        return q @ e.T
    if metric == "cosine":
        return (q / np.linalg.norm(q, axis=1, keepdims=True)) @ (e / np.linalg.norm(e, axis=1, keepdims=True)).T
    return ((q[:, None, :] - e[None]) ** 2).sum(-1)


def rescore_knn(q, emb, ixbits, k, n, metric):
    """The protocol's rescore: the n*k nearest by Hamming of q's sign bits,
    ranked by metric against the floats, ties to the lower index."""
    cand, _ = hamming_knn(ubinary(q), ixbits, min(n * k, len(emb)))
    s = metric_scores(q, emb, metric)
    idx, sc = [], []
    for r in range(len(q)):
        c = cand[r]
        v = s[r, c]
        o = np.lexsort((c, v if metric == "l2" else -v))[:k]
        idx.append(c[o])
        sc.append(v[o])
    return np.array(idx), np.array(sc)


class KnnBinary(WorkerTest):
    def setUp(self):
        super().setUp()
        self.rng = np.random.default_rng(5)
        self.emb = self.rng.standard_normal((700, 24)).astype(np.float32)
        self.odd = self.rng.standard_normal((300, 20)).astype(np.float32)     # 20 bits: 3 bytes, 4 padding bits
        self.own = self.rng.integers(0, 256, (400, 2), dtype=np.uint8)        # a file's own binary [N, 16 / 8]
        save_safetensors(self.path("ix.safetensors"), {"embeddings": self.emb})
        save_safetensors(self.path("odd.safetensors"), {"embeddings": self.odd})
        save_safetensors(self.path("own.safetensors"),
                         {"embeddings": self.rng.standard_normal((400, 16)).astype(np.float32),
                          "binary": self.own})
        self.worker("--model", f"ix={self.path('ix.safetensors')}", "--model",
                    f"odd={self.path('odd.safetensors')}", "--model", f"own={self.path('own.safetensors')}")
        self.reply = self.client.key("reply:knnbin")

    def run_jobs(self, jobs):
        """Enqueued in one transaction, so that they can share batches."""
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

    def check(self, res, idx, sc, exact=True):
        self.assertEqual(res["status"], "ok", res.get("error"))
        np.testing.assert_array_equal(from_tensor(res["outputs"]["indices"]), idx)
        got = from_tensor(res["outputs"]["scores"])
        if exact:
            np.testing.assert_array_equal(got, sc)
        else:
            np.testing.assert_allclose(got, sc, rtol=1e-5, atol=1e-5)

    def test_hamming_ubinary_and_binary(self):
        """Both encodings of the same bits give the same hits; many equal
        distances (24 bits) check the tie rule; rows of different jobs and k
        share a batch."""
        jobs, want = [], []
        ixbits = ubinary(self.emb)
        for rows, k in ((1, 1), (5, 10), (3, 700), (2, 37)):
            q = self.rng.standard_normal((rows, 24)).astype(np.float32)
            for enc in (ubinary, binary):
                jobs.append({"op": "knn", "model": "ix", "inputs": {"q": tensor(enc(q))}, "params": {"k": k}})
                want.append(hamming_knn(ubinary(q), ixbits, k))
        for res, (idx, sc) in zip(self.run_jobs(jobs), want):
            self.check(res, idx, sc)

    def test_padding_bits_and_own_binary(self):
        """20 components pack into 3 bytes: the 4 bits past them are ignored;
        an index file's own `binary` tensor is what is searched."""
        q = self.rng.standard_normal((4, 20)).astype(np.float32)
        bits = ubinary(q)
        noisy = bits.copy()
        noisy[:, 2] |= 0x0f
        qown = self.rng.integers(0, 256, (3, 2), dtype=np.uint8)
        res = self.run_jobs([
            {"op": "knn", "model": "odd", "inputs": {"q": tensor(bits)}, "params": {"k": 9}},
            {"op": "knn", "model": "odd", "inputs": {"q": tensor(noisy)}, "params": {"k": 9}},
            {"op": "knn", "model": "own", "inputs": {"q": tensor(qown)}, "params": {"k": 12}},
        ])
        want = hamming_knn(bits, ubinary(self.odd), 9)
        self.check(res[0], *want)
        self.check(res[1], *want)
        self.check(res[2], *hamming_knn(qown, self.own, 12))

    def test_rescore(self):
        """Float queries with rescore: the n*k nearest by Hamming, ranked by
        the metric; rescore large enough to take the whole index is the
        exact float search; plain float jobs in the same transaction keep
        theirs."""
        jobs, want = [], []
        ixbits = ubinary(self.emb)
        for metric in ("cosine", "dot", "l2"):
            for rows, k, n in ((1, 1, 1), (4, 10, 4), (3, 5, 1000)):
                q = self.rng.standard_normal((rows, 24)).astype(np.float32)
                jobs.append({"op": "knn", "model": "ix", "inputs": {"q": tensor(q)},
                             "params": {"k": k, "rescore": n, "metric": metric}})
                want.append(rescore_knn(q, self.emb, ixbits, k, n, metric))
            q = self.rng.standard_normal((2, 24)).astype(np.float32)
            s = metric_scores(q, self.emb, metric)
            o = np.argsort(s if metric == "l2" else -s, axis=1, kind="stable")[:, :6]
            jobs.append({"op": "knn", "model": "ix", "inputs": {"q": tensor(q)},
                         "params": {"k": 6, "metric": metric}})
            want.append((o, np.take_along_axis(s, o, 1)))
        for res, (idx, sc) in zip(self.run_jobs(jobs), want):
            self.assertEqual(res["status"], "ok", res.get("error"))
            np.testing.assert_array_equal(from_tensor(res["outputs"]["indices"]), idx)
            np.testing.assert_allclose(from_tensor(res["outputs"]["scores"]), sc, rtol=1e-4, atol=1e-3)
        # rescoring the whole index is the exact search
        q = self.rng.standard_normal((3, 24)).astype(np.float32)
        exact, full = self.run_jobs([
            {"op": "knn", "model": "ix", "inputs": {"q": tensor(q)}, "params": {"k": 10}},
            {"op": "knn", "model": "ix", "inputs": {"q": tensor(q)}, "params": {"k": 10, "rescore": 70}}])
        np.testing.assert_array_equal(from_tensor(exact["outputs"]["indices"]),
                                      from_tensor(full["outputs"]["indices"]))

    def test_hostile(self):
        q8 = ubinary(self.rng.standard_normal((2, 24)))
        qf = self.rng.standard_normal((2, 24)).astype(np.float32)
        good = {"op": "knn", "model": "ix", "inputs": {"q": tensor(q8)}, "params": {"k": 3}}
        res = self.run_jobs([
            {"op": "knn", "model": "ix", "inputs": {"q": tensor(np.zeros((2, 4), np.uint8))}},      # width
            {"op": "knn", "model": "ix", "inputs": {"q": tensor(np.zeros((2, 24), np.uint8))}},     # unpacked
            {"op": "knn", "model": "ix", "inputs": {"q": tensor(np.zeros(3, np.int8))}},          # 1-D
            {"op": "knn", "model": "ix", "inputs": {"q": tensor(np.zeros((2, 3), np.int32))}},    # dtype
            {"op": "knn", "model": "ix", "inputs": {"q": tensor(q8)}, "params": {"metric": "dot"}},
            {"op": "knn", "model": "ix", "inputs": {"q": tensor(q8)}, "params": {"rescore": 4}},
            {"op": "knn", "model": "ix", "inputs": {"q": tensor(qf)}, "params": {"rescore": 0}},
            {"op": "knn", "model": "ix", "inputs": {"q": tensor(qf)}, "params": {"rescore": 1001}},
            {"op": "knn", "model": "ix", "inputs": {"q": tensor(qf)}, "params": {"rescore": "4"}},
            {"op": "knn", "model": "ix", "inputs": {"q": tensor(q8)}, "params": {"k": 701}},
            {"op": "knn", "model": "odd", "inputs": {"q": tensor(q8)}},                           # 3 bytes, other index
            good,
        ])
        self.assertEqual([r["status"] == "error" and r["error"]["code"] for r in res],
                         ["shape_mismatch", "shape_mismatch", "shape_mismatch", "bad_request",
                          "bad_request", "bad_request", "bad_request", "bad_request", "bad_request",
                          "bad_request", False, False])
        self.assertIn("[rows, 3]", res[0]["error"]["message"])
        self.assertIn("rescore", res[5]["error"]["message"])
        self.check(res[-1], *hamming_knn(q8, ubinary(self.emb), 3))
        masked = q8.copy()
        masked[:, 2] &= 0xf0    # the odd index has 20 components: the last 4 bits are padding
        self.check(res[-2], *hamming_knn(masked, ubinary(self.odd), 10))


class KnnBinaryIndexFile(WorkerTest):
    def test_bad_binary_tensor_refused_at_start(self):
        save_safetensors(self.path("bad.safetensors"),
                         {"embeddings": np.zeros((10, 16), np.float32), "binary": np.zeros((10, 3), np.uint8)})
        p = subprocess.run([GPUQ, "worker", "--redis", self.redis.url, "--backend", "cpu", "--model",
                            f"bad={self.path('bad.safetensors')}"], capture_output=True, text=True, timeout=30)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("binary", p.stdout + p.stderr)


if __name__ == "__main__":
    unittest.main()
