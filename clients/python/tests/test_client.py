"""The installed client against a real Redis and gpuq worker, started by
tests/e2e/test_clients.py: GPUQ_REDIS, GPUQ_MODEL_NAME (an mlp taking 4
columns) and GPUQ_WANT (JSON: the model's output for the row [1, 2, 3, 4]);
GPUQ_TEXT_MODEL (a text encoder), GPUQ_TEXTS and GPUQ_TEXT_WANT (JSON: texts
and their embeddings)."""
import asyncio
import base64
import json
import os
import threading
import unittest

import numpy as np
import redis

import gpuq_client
from gpuq_client import AsyncClient, Client, GpuqError, GpuqTimeoutError

URL, MODEL = os.environ["GPUQ_REDIS"], os.environ["GPUQ_MODEL_NAME"]
WANT = np.array(json.loads(os.environ["GPUQ_WANT"]), np.float32)
X = np.array([[1, 2, 3, 4]], np.float32)
TEXT_MODEL, TEXTS = os.environ["GPUQ_TEXT_MODEL"], json.loads(os.environ["GPUQ_TEXTS"])
TEXT_WANT = np.array(json.loads(os.environ["GPUQ_TEXT_WANT"]), np.float32)
CE_MODEL, CE_DOCS = os.environ["GPUQ_CE_MODEL"], json.loads(os.environ["GPUQ_CE_DOCS"])
RERANK_WANT = np.array(json.loads(os.environ["GPUQ_RERANK_WANT"]), np.float32)
CLASSIFY_WANT = np.array(json.loads(os.environ["GPUQ_CLASSIFY_WANT"]), np.float32)
SPARSE_MODEL, SPARSE_WANT = os.environ["GPUQ_SPARSE_MODEL"], json.loads(os.environ["GPUQ_SPARSE_WANT"])
DOC, DOC_WANT = os.environ["GPUQ_DOC"], json.loads(os.environ["GPUQ_DOC_WANT"])


class SyncClient(unittest.TestCase):
    def setUp(self):
        self.gq = Client(URL)
        self.r = redis.Redis.from_url(URL)

    def tearDown(self):
        self.gq.close()

    def test_run(self):
        res = self.gq.run("mlp", {"x": X}, model=MODEL, id="py-1", meta=[1, 2])
        self.assertTrue(res.ok)
        self.assertEqual((res.id, res.meta), ("py-1", [1, 2]))
        np.testing.assert_allclose(res.outputs["y"][0], WANT, rtol=1e-5, atol=1e-5)
        self.assertFalse(self.r.exists("gpuq:{default}:result:py-1"), "a waited-for result is not stored")
        self.gq.run("mlp", {"x": X}, model=MODEL, id="py-kept", result_ttl=60)
        self.assertEqual(self.gq.result("py-kept").id, "py-kept")

    def test_embed(self):
        y = self.gq.embed(TEXTS, TEXT_MODEL)
        self.assertEqual(y.shape, TEXT_WANT.shape)
        np.testing.assert_allclose(y, TEXT_WANT, atol=1e-6)
        np.testing.assert_allclose(self.gq.embed(TEXTS[1], TEXT_MODEL), TEXT_WANT[1], atol=1e-6)   # one str: one row
        cls = self.gq.embed(tuple(TEXTS), TEXT_MODEL, pooling="cls", normalize=False, max_length=3)
        self.assertFalse(np.allclose(cls, TEXT_WANT, atol=1e-3), "params reach the worker")
        short = self.gq.embed(TEXTS, TEXT_MODEL, dimensions=16)    # Matryoshka: cut, normalized again
        want = TEXT_WANT[:, :16] / np.linalg.norm(TEXT_WANT[:, :16], axis=1, keepdims=True)
        np.testing.assert_allclose(short, want, atol=1e-5)
        bits = self.gq.embed(TEXTS, TEXT_MODEL, dtype="ubinary")
        np.testing.assert_array_equal(bits, np.packbits(TEXT_WANT > 0, axis=1))
        with self.assertRaises(GpuqError) as e:
            self.gq.embed(TEXTS, TEXT_MODEL, prompt_name="nope")
        self.assertIn("no prompt named", e.exception.message)
        with self.assertRaises(GpuqError) as e:
            self.gq.embed([], TEXT_MODEL)
        self.assertEqual(e.exception.code, "bad_request")
        y = asyncio.run(self.async_embed())
        np.testing.assert_allclose(y, TEXT_WANT, atol=1e-6)

    def test_rerank_and_classify(self):
        ranked = self.gq.rerank(TEXTS[1], CE_DOCS, CE_MODEL, return_text=True, top_n=3)
        order = np.argsort(-RERANK_WANT, kind="stable")[:3]
        self.assertEqual([r["index"] for r in ranked], list(order))
        self.assertEqual([r["text"] for r in ranked], [CE_DOCS[i] for i in order])
        np.testing.assert_allclose([r["score"] for r in ranked], RERANK_WANT[order], rtol=1e-5)
        labelled = self.gq.classify(CE_DOCS, CE_MODEL)
        self.assertEqual([row[0]["label"] for row in labelled], ["LABEL_0"] * len(CE_DOCS))
        np.testing.assert_allclose([row[0]["score"] for row in labelled], CLASSIFY_WANT[:, 0], rtol=1e-5)
        self.assertEqual(len(self.gq.classify(CE_DOCS[0], CE_MODEL)), 1)     # one str: one list of labels
        with self.assertRaises(GpuqError) as e:
            self.gq.rerank(TEXTS[1], CE_DOCS, CE_MODEL, top_n=0)
        self.assertEqual(e.exception.code, "bad_request")
        ranked = asyncio.run(self.async_rerank())
        self.assertEqual([r["index"] for r in ranked], list(np.argsort(-RERANK_WANT, kind="stable")))

    def test_embed_sparse_and_documents(self):
        rows = self.gq.embed_sparse(CE_DOCS, SPARSE_MODEL)
        off = SPARSE_WANT["offsets"]
        for r, row in enumerate(rows):
            np.testing.assert_array_equal(row["indices"], SPARSE_WANT["indices"][off[r]:off[r + 1]])
            np.testing.assert_allclose(row["values"], SPARSE_WANT["values"][off[r]:off[r + 1]], rtol=1e-6)
        top = self.gq.embed_sparse(CE_DOCS[0], SPARSE_MODEL, top_k=3, return_tokens=True)
        self.assertEqual((len(top["indices"]), len(top["tokens"])), (3, 3))
        chunks = self.gq.embed_document(DOC, TEXT_MODEL, tokens=16, overlap=4)
        self.assertEqual([c["start"] for c in chunks], DOC_WANT["char_start"])
        self.assertEqual([c["end"] for c in chunks], DOC_WANT["char_end"])
        np.testing.assert_allclose([c["embedding"] for c in chunks], DOC_WANT["y"], atol=1e-6)
        self.assertTrue(all(c["text"] == DOC.encode()[c["start"]:c["end"]].decode() for c in chunks))
        self.assertGreater(len(chunks), 3)

    @staticmethod
    async def async_rerank():
        gq = AsyncClient(URL)
        try:
            return await gq.rerank(TEXTS[1], CE_DOCS, CE_MODEL)
        finally:
            await gq.close()

    @staticmethod
    async def async_embed():
        gq = AsyncClient(URL)
        try:
            return await gq.embed(TEXTS, TEXT_MODEL)
        finally:
            await gq.close()

    def test_error_result_raises(self):
        with self.assertRaises(GpuqError) as e:
            self.gq.run("mlp", {"x": X[:, :3]}, model=MODEL)
        self.assertEqual(e.exception.code, "shape_mismatch")
        self.assertFalse(e.exception.result.ok)

    def test_timeout_is_its_own_error(self):
        with self.assertRaises(GpuqTimeoutError) as e:
            self.gq.run("mlp", {"x": X}, model=MODEL, queue="nobody-serves-this", timeout=0.5)
        self.assertNotIsInstance(e.exception, GpuqError)
        self.assertIsInstance(e.exception, TimeoutError)

    def test_threads_share_one_reader(self):
        results = []
        threads = [threading.Thread(target=lambda: results.append(self.gq.run("mlp", {"x": X}, model=MODEL)))
                   for _ in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(len(results), 20)
        for res in results:
            np.testing.assert_allclose(res.outputs["y"][0], WANT, rtol=1e-5, atol=1e-5)

    def test_result_in_either_format(self):
        self.gq.enqueue("mlp", {"x": X}, model=MODEL, id="py-msgpack")
        job = {"op": "mlp", "model": MODEL, "id": "py-json",
               "inputs": {"x": {"dtype": "f32", "shape": [1, 4], "data": base64.b64encode(X.tobytes()).decode()}}}
        self.r.xadd("gpuq:{default}:jobs", {"json": json.dumps(job)})
        for job_id in ("py-msgpack", "py-json"):
            res = poll(self.gq, job_id)
            np.testing.assert_allclose(res.outputs["y"][0], WANT, rtol=1e-5, atol=1e-5)
        self.assertTrue(self.r.get("gpuq:{default}:result:py-json").startswith(b"{"), "stored as JSON")


def poll(gq, job_id):
    for _ in range(200):
        res = gq.result(job_id)
        if res is not None:
            return res
        threading.Event().wait(0.05)
    raise AssertionError(f"no result for {job_id}")


class Async(unittest.TestCase):
    def test_many_waiters_one_connection(self):
        """500 run() calls at once hold the client's command pool and one reader, not a connection each."""
        r = redis.Redis.from_url(URL)
        base = r.info("stats")["total_connections_received"]

        async def main():
            gq = AsyncClient(URL, max_connections=4)
            results = await asyncio.gather(*(gq.run("mlp", {"x": X * (i % 3)}, model=MODEL) for i in range(500)))
            await gq.close()
            return results
        results = asyncio.run(main())
        for i, res in enumerate(results):
            self.assertTrue(res.ok)
            if i % 3 == 1:
                np.testing.assert_allclose(res.outputs["y"][0], WANT, rtol=1e-5, atol=1e-5)
        self.assertLessEqual(r.info("stats")["total_connections_received"] - base, 5)
        self.assertGreater(max(res.timing["batch_size"] for res in results), 1, "waiting side by side, they batch")

    def test_waiter_that_gives_up_leaves_nothing(self):
        async def main():
            gq = AsyncClient(URL)
            with self.assertRaises(GpuqTimeoutError):
                await gq.run("mlp", {"x": X}, model=MODEL, id="late", queue="slow", timeout=0.2)
            w = gq._readers["slow"][0]
            self.assertEqual(w.pending(), 0)
            # the late result arrives after its waiter left: dropped, and the next one is served
            r = redis.asyncio.Redis.from_url(URL)
            await r.rpush(w.key, json.dumps({"id": "late", "status": "ok"}))
            res = await gq.run("mlp", {"x": X}, model=MODEL)
            self.assertTrue(res.ok)
            for _ in range(100):
                if not await r.llen(w.key):
                    break
                await asyncio.sleep(0.01)
            self.assertEqual(await r.llen(w.key), 0)
            await gq.close()
            self.assertFalse(await r.exists(w.key), "close() deletes the reply list")
            await r.close()
        asyncio.run(main())

    def test_error_and_timeout(self):
        async def main():
            gq = AsyncClient(URL)
            with self.assertRaises(GpuqError) as e:
                await gq.run("mlp", {"x": X[:, :2]}, model=MODEL)
            self.assertEqual(e.exception.code, "shape_mismatch")
            with self.assertRaises(GpuqTimeoutError):
                await gq.run("mlp", {"x": X}, model=MODEL, queue="nobody-serves-this", timeout=0.3)
            await gq.close()
        asyncio.run(main())


class Installed(unittest.TestCase):
    def test_typed_package(self):
        here = os.path.dirname(gpuq_client.__file__)
        self.assertIn("site-packages", here, "the tests run against the installed package")
        self.assertTrue(os.path.exists(os.path.join(here, "py.typed")))


if __name__ == "__main__":
    unittest.main()
