"""`gpuq http` against a real redis-server and worker (a random tiny BERT
encoder from scripts/make-model): the real `openai` SDK and LangChain's
OpenAIEmbeddings from PyPI in a clean venv give the embed op's own results;
TEI's /embed in TEI's documented shapes; /v1/jobs; /v1/models from the
workers' presence; keys and scopes; and hostile requests (oversized,
slowloris, invalid JSON, 10,000 inputs, wrong keys), after which nothing
reached the queue and the front door still serves."""
import base64
import json
import os
import socket
import subprocess
import sys
import threading
import time
import unittest

import msgpack
import numpy as np

from harness import GPUQ, WorkerTest, from_tensor, free_port
from httpfront import ROOT, Front, client_venv, key_file, run_in_venv

TEXTS = ["A man is eating food.", "The cat sat on the mat", "", "gpuq batches embeddings"]


class HttpTest(WorkerTest):
    front_args = ()
    with_worker = True

    def setUp(self):
        super().setUp()
        self.fronts = []
        if self.with_worker:
            folder = self.path("tiny")
            subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "make-model"), "--bert", folder,
                            "--pooling", "mean", "--normalize"], check=True, capture_output=True)
            self.worker("--model", f"m={folder}")
        self.front = self.start_front(*self.front_args)

    def tearDown(self):
        for f in self.fronts:
            if f.proc.poll() is None:
                f.proc.kill()
                f.proc.wait()
        super().tearDown()

    def start_front(self, *args):
        f = Front(self.redis.url, *args)
        self.fronts.append(f)
        return f

    def embed_op(self, texts, **params):
        """The embed op's own answer, straight through Redis: (y, tokens)."""
        reply = self.client.key("reply:ref")
        job = {"op": "embed", "model": "m", "id": "ref", "reply_to": reply, "inputs": {"text": texts}}
        if params:
            job["params"] = params
        self.client.enqueue(job)
        r = self.client.wait(reply)
        self.assertEqual(r["status"], "ok", r.get("error"))
        return from_tensor(r["outputs"]["y"]), np.frombuffer(r["outputs"]["tokens"]["data"], "<i4")

    def xlen(self):
        return self.r.xlen(self.client.key("jobs")) if self.r.exists(self.client.key("jobs")) else 0


class RealClients(HttpTest):
    """The clients people already use, pointed at the front door."""

    def setUp(self):
        self.py = client_venv()
        if self.py is None:
            self.skipTest("no wheels in .cache/pypi-http (scripts/setup fetches them)")
        super().setUp()

    def test_openai_sdk(self):
        script = f"""
import json
from openai import OpenAI
c = OpenAI(base_url="{self.front.url}/v1", api_key="unused", max_retries=0)
one = c.embeddings.create(model="m", input={TEXTS[0]!r})
batch = c.embeddings.create(model="m", input={TEXTS!r})
dims = c.embeddings.create(model="m", input={TEXTS[:2]!r}, dimensions=8)
b64 = c.embeddings.create(model="m", input={TEXTS[1]!r}, encoding_format="base64")
fl = c.embeddings.create(model="m", input={TEXTS[1]!r}, encoding_format="float")
print(json.dumps({{"one": one.data[0].embedding, "one_index": one.data[0].index, "object": one.object,
  "model": one.model, "usage": [one.usage.prompt_tokens, one.usage.total_tokens],
  "batch": [d.embedding for d in batch.data], "indexes": [d.index for d in batch.data],
  "batch_usage": batch.usage.prompt_tokens, "dims": [d.embedding for d in dims.data],
  "b64": b64.data[0].embedding, "float": fl.data[0].embedding,
  "kinds": [d.object for d in batch.data]}}))
"""
        got = run_in_venv(self.py, script)
        y, tokens = self.embed_op(TEXTS)
        self.assertEqual((got["object"], got["model"], got["one_index"]), ("list", "m", 0))
        y0, _ = self.embed_op(TEXTS[:1])   # the same job as each request: the same bits
        np.testing.assert_array_equal(np.float32(got["one"]), y0[0])
        np.testing.assert_array_equal(np.float32(got["batch"]), y)
        self.assertEqual(got["indexes"], [0, 1, 2, 3])
        self.assertEqual(got["kinds"], ["embedding"] * 4)
        self.assertEqual(got["usage"], [int(tokens[0])] * 2)     # [CLS] and [SEP] counted
        self.assertEqual(got["batch_usage"], int(tokens.sum()))
        yd, _ = self.embed_op(TEXTS[:2], dimensions=8)
        self.assertEqual(np.float32(got["dims"]).shape, (2, 8))
        np.testing.assert_array_equal(np.float32(got["dims"]), yd)
        # base64 asked for explicitly: the little-endian f32 bytes, as OpenAI sends them
        y1, _ = self.embed_op(TEXTS[1:2])
        np.testing.assert_array_equal(np.frombuffer(base64.b64decode(got["b64"]), "<f4"), y1[0])
        np.testing.assert_array_equal(np.float32(got["float"]), y1[0])

    def test_langchain_openai_embeddings(self):
        # LangChain tokenizes with tiktoken first unless told not to: the
        # model is not an OpenAI one, so its own tokenizer is the worker's
        script = f"""
import json
from langchain_openai import OpenAIEmbeddings
e = OpenAIEmbeddings(model="m", base_url="{self.front.url}/v1", api_key="unused",
                     check_embedding_ctx_length=False, max_retries=0)
print(json.dumps({{"docs": e.embed_documents({TEXTS!r}), "query": e.embed_query({TEXTS[3]!r})}}))
"""
        got = run_in_venv(self.py, script)
        y, _ = self.embed_op(TEXTS)
        np.testing.assert_array_equal(np.float32(got["docs"]), y)
        y3, _ = self.embed_op(TEXTS[3:4])
        np.testing.assert_array_equal(np.float32(got["query"]), y3[0])


class Tei(HttpTest):
    """TEI's /embed, field by field as its openapi.json documents it:
    EmbedRequest {inputs, normalize (true), truncate (false),
    truncation_direction (right), prompt_name}, EmbedResponse [[float]],
    ErrorResponse {error, error_type}."""

    def test_embed_shapes(self):
        y, _ = self.embed_op(TEXTS[:2])
        st, h, body = self.front.post("/embed", {"inputs": TEXTS[:2]})
        self.assertEqual(st, 200, body)
        self.assertTrue(h["Content-Type"].startswith("application/json"))
        self.assertIsInstance(body, list)
        self.assertTrue(all(isinstance(row, list) and all(isinstance(v, float) for v in row) for row in body))
        np.testing.assert_array_equal(np.float32(body), y)
        st, _, one = self.front.post("/embed", {"inputs": TEXTS[0]})      # a string: one row
        self.assertEqual((st, len(one)), (200, 1))
        np.testing.assert_array_equal(np.float32(one[0]), y[0])
        raw, _ = self.embed_op(TEXTS[:1], normalize=False)
        st, _, un = self.front.post("/embed", {"inputs": [TEXTS[0]], "normalize": False, "truncate": True,
                                               "truncation_direction": "Right", "prompt_name": None})
        self.assertEqual(st, 200, un)
        np.testing.assert_array_equal(np.float32(un), raw)
        self.assertNotAlmostEqual(float(np.linalg.norm(un[0])), 1.0, places=3)

    def test_errors_in_tei_shape(self):
        for body, status in [({"inputs": []}, 422), ({"nope": 1}, 422), ({"inputs": "x", "normalize": "yes"}, 422),
                             ({"inputs": "x", "truncation_direction": "up"}, 422), ({"inputs": [[1, -2]]}, 422),
                             ({"inputs": ["x"] * 3000}, 413)]:
            st, _, err = self.front.post("/embed", body)
            self.assertEqual(st, status, (body, err))
            self.assertEqual(set(err) - {"code"}, {"error", "error_type"}, err)
            self.assertIsInstance(err["error"], str)
        st, _, err = self.front.post("/tokenize", {"inputs": "a"})
        self.assertEqual((st, err["code"]), (501, "unknown_op"))
        for path, op in (("/rerank", "rerank"), ("/predict", "classify"), ("/embed_sparse", "embed_sparse")):
            st, _, err = self.front.post(path, {"query": "q", "texts": ["a"], "inputs": "a"})
            self.assertEqual((st, err["code"]), (400, "unknown_model"), path)   # only an embedder is live
            self.assertIn(f"serves a model for {op}", err["error"])
        for path, body in (("/rerank", {"query": 3, "texts": ["a"]}), ("/rerank", {"query": "q", "texts": []}),
                           ("/rerank", {"query": "q", "texts": ["a", 2]}), ("/predict", {"inputs": [["a"]]}),
                           ("/embed_sparse", {"inputs": 5}), ("/rerank", {"query": "q", "texts": ["a"] * 3000})):
            st, _, err = self.front.post(path, body)
            self.assertIn(st, (413, 422), (path, body, err))
            self.assertEqual(set(err) - {"code"}, {"error", "error_type"}, err)


class TeiOps(HttpTest):
    """/rerank, /predict and /embed_sparse in TEI's shapes (its docs/openapi.json: RerankRequest ->
    [Rank {index, score, text?}] best first; PredictRequest -> [Prediction {score, label}] best first,
    a list of them per input for a batch; EmbedSparseRequest -> [[SparseValue {index, value}]]), each
    equal to the op's own result through Redis."""
    with_worker = False

    def setUp(self):
        super().setUp()
        make = os.path.join(ROOT, "scripts", "make-model")
        for name, args in (("ce", ["--family", "bert", "--head", "classify", "1"]),
                           ("nli", ["--family", "xlm-roberta", "--head", "classify", "3"]),
                           ("splade", ["--family", "bert", "--head", "mlm"])):
            subprocess.run([sys.executable, make, *args[:2], self.path(name), *args[2:]], check=True,
                           capture_output=True)
        self.worker("--model", f"ce={self.path('ce')}", "--model", f"nli={self.path('nli')}",
                    "--model", f"splade={self.path('splade')}")

    def op(self, op, model, inputs, **params):
        reply = self.client.key("reply:ref")
        self.client.enqueue({"op": op, "model": model, "id": "ref", "reply_to": reply, "inputs": inputs,
                             "params": params})
        r = self.client.wait(reply)
        self.assertEqual(r["status"], "ok", r.get("error"))
        return r["outputs"]

    def test_rerank(self):
        docs = ["sunny in Paris", "a cat", "", "rain in Paris"]
        want = from_tensor(self.op("rerank", "ce", {"query": "weather in Paris", "documents": docs})["scores"])
        st, _, got = self.front.post("/rerank", {"query": "weather in Paris", "texts": docs, "return_text": True})
        self.assertEqual(st, 200, got)
        order = list(np.argsort(-want, kind="stable"))
        self.assertEqual([g["index"] for g in got], order)
        self.assertEqual([g["text"] for g in got], [docs[i] for i in order])
        np.testing.assert_allclose([g["score"] for g in got], want[order], rtol=1e-6)
        self.assertEqual(set(got[0]), {"index", "score", "text"})
        st, _, raw = self.front.post("/rerank", {"query": "weather in Paris", "texts": docs, "raw_scores": True,
                                                 "model": "ce"})
        self.assertEqual(st, 200, raw)
        self.assertEqual(set(raw[0]), {"index", "score"})
        logits = from_tensor(self.op("rerank", "ce", {"query": "weather in Paris", "documents": docs},
                                     raw_scores=True)["scores"])
        np.testing.assert_allclose([g["score"] for g in raw], logits[order], rtol=1e-6)

    def test_predict(self):
        texts = ["I love it", "I hate it", "meh"]
        out = self.op("classify", "nli", {"text": texts})
        want, labels = from_tensor(out["scores"]), out["labels"]
        st, _, got = self.front.post("/predict", {"inputs": texts, "model": "nli"})
        self.assertEqual(st, 200, got)
        self.assertEqual(len(got), 3)
        for row, w in zip(got, want):
            self.assertEqual([p["label"] for p in row], [labels[j] for j in np.argsort(-w, kind="stable")])
            np.testing.assert_allclose([p["score"] for p in row], np.sort(w)[::-1], rtol=1e-6)
        st, _, one = self.front.post("/predict", {"inputs": "I love it", "model": "nli"})
        self.assertEqual((st, [p["label"] for p in one]), (200, [p["label"] for p in got[0]]))
        pair = self.op("classify", "nli", {"pairs": [["a man plays", "someone makes music"]]})
        st, _, p = self.front.post("/predict", {"inputs": ["a man plays", "someone makes music"], "model": "nli"})
        self.assertEqual(st, 200, p)                  # two strings: one pair, as TEI reads them
        self.assertAlmostEqual(p[0]["score"], float(from_tensor(pair["scores"]).max()), places=6)

    def test_embed_sparse(self):
        texts = ["the weather is lovely", "rain"]
        out = self.op("embed_sparse", "splade", {"text": texts})
        idx, val, off = (from_tensor(out[k]) for k in ("indices", "values", "offsets"))
        st, _, got = self.front.post("/embed_sparse", {"inputs": texts})
        self.assertEqual(st, 200, got)
        for r, row in enumerate(got):
            self.assertEqual([v["index"] for v in row], list(idx[off[r]:off[r + 1]]))
            np.testing.assert_allclose([v["value"] for v in row], val[off[r]:off[r + 1]], rtol=1e-6)


class Jobs(HttpTest):
    def test_wait_and_get(self):
        x = np.array([[1.0, 2.0]], np.float32)
        job = {"op": "softmax", "inputs": {"x": {"dtype": "f32", "shape": [1, 2],
                                                 "data": base64.b64encode(x.tobytes()).decode()}}}
        st, _, res = self.front.post("/v1/jobs?wait=10", job)
        self.assertEqual((st, res["status"]), (200, "ok"), res)
        y = np.frombuffer(base64.b64decode(res["outputs"]["y"]["data"]), "<f4")
        np.testing.assert_allclose(y, np.exp(x[0]) / np.exp(x[0]).sum(), rtol=1e-6)
        st, _, queued = self.front.post("/v1/jobs", dict(job, id="mine"))
        self.assertEqual((st, queued["id"], queued["status"]), (202, "mine", "queued"))
        self.wait_for(lambda: self.front.get("/v1/jobs/mine")[0] == 200, what="the stored result")
        st, _, stored = self.front.get("/v1/jobs/mine")
        self.assertEqual((stored["id"], stored["status"]), ("mine", "ok"))
        self.assertEqual(self.front.get("/v1/jobs/absent")[0], 404)
        st, _, err = self.front.post("/v1/jobs", dict(job, reply_to="gpuq:{default}:elsewhere"))
        self.assertEqual((st, err["error"]["code"]), (400, "bad_request"))
        st, _, bad = self.front.post("/v1/jobs?wait=10", {"op": "nope", "inputs": {}})
        self.assertEqual((st, bad["status"], bad["error"]["code"]), (200, "error", "unknown_op"))

    def test_enqueue_sends_texts(self):
        p = subprocess.run([GPUQ, "enqueue", "--redis", self.redis.url, "--op", "embed", "--model", "m", "--text",
                            TEXTS[0], "--text", TEXTS[1], "--wait", "20"], capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn("output y: f32 [2, 64]", p.stdout)
        _, tokens = self.embed_op(TEXTS[:2])
        self.assertIn(f"output tokens: i32 [2] {tokens[0]} {tokens[1]}", p.stdout)

    def test_models_are_the_live_workers(self):
        st, _, models = self.front.get("/v1/models")
        self.assertEqual(st, 200)
        self.assertEqual(models["object"], "list")
        self.assertEqual([(m["id"], m["object"], m["owned_by"]) for m in models["data"]], [("m", "model", "gpuq")])
        self.workers[0].stop()      # a clean stop takes its presence away
        self.assertEqual(self.front.get("/v1/models")[2]["data"], [])
        st, _, err = self.front.post("/embed", {"inputs": "x"})
        self.assertEqual((st, err["code"]), (424, "unknown_model"))

    def test_metrics_lint(self):
        self.front.post("/v1/embeddings", {"model": "m", "input": "x"})
        self.front.get("/nope")
        st, h, text = self.front.get("/metrics")
        self.assertEqual(st, 200)
        self.assertIn('gpuq_http_requests_total{route="/v1/embeddings",status="200"} 1', text)
        self.assertIn('gpuq_http_requests_total{route="other",status="404"} 1', text)
        self.assertIn("gpuq_http_request_duration_seconds_bucket", text)
        self.assertIn("gpuq_http_requests_in_flight 1", text)   # this request
        promtool = os.path.join(ROOT, ".cache", "prometheus", "usr", "bin", "promtool")
        if os.path.exists(promtool):
            p = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
            self.assertEqual(p.returncode, 0, p.stdout + p.stderr)


class Keys(HttpTest):
    """Bearer keys from a file of digests: scopes, a queue per key."""
    with_worker = False

    def setUp(self):
        super().setUp()
        self.front.stop()
        self.fronts.remove(self.front)
        keys = key_file(self.path("keys"), [("w-key", "write", None), ("r-key", "read", None),
                                            ("t-key", None, "tenant")])
        self.front = self.start_front("--api-key-file", keys, "--max-queue", "0")

    def test_keys_and_scopes(self):
        job = {"op": "softmax", "inputs": {}}
        st, _, err = self.front.post("/v1/jobs", job)
        self.assertEqual((st, err["error"]["code"], err["error"]["type"]), (401, "unauthorized", "authentication_error"))
        self.assertEqual(self.front.post("/v1/jobs", job, key="wrong")[0], 401)
        self.assertEqual(self.front.post("/v1/jobs", job, headers={"Authorization": "Basic eDp5"})[0], 401)
        st, _, err = self.front.post("/v1/jobs", job, key="r-key")
        self.assertEqual((st, err["error"]["code"]), (403, "forbidden"))
        self.assertEqual(self.front.get("/v1/models", key="r-key")[0], 200)
        self.assertEqual(self.front.get("/metrics")[0], 401)
        self.assertEqual(self.xlen(), 0)    # nothing refused reached the queue
        self.assertEqual(self.front.post("/v1/jobs", job, key="w-key")[0], 202)
        self.assertEqual(self.xlen(), 1)
        self.assertEqual(self.front.post("/v1/jobs", job, key="t-key")[0], 202)   # the key's own queue
        self.assertEqual(self.r.xlen(self.client.key("jobs", "tenant")), 1)
        self.assertEqual(self.front.get("/healthz")[0], 200)   # open: for load balancers
        # a dashboard change needs a write key
        st, _, err = self.front.post("/api/dead/retry", {"queue": "default", "id": "1-0"}, key="r-key")
        self.assertEqual(st, 403)

    def test_any_address_needs_keys(self):
        port = free_port()
        p = subprocess.run([GPUQ, "http", "--redis", self.redis.url, "--listen", f"0.0.0.0:{port}"],
                           capture_output=True, text=True, timeout=10)
        self.assertEqual(p.returncode, 2)
        self.assertEqual(len(p.stderr.strip().splitlines()), 1, p.stderr)
        self.assertIn("loopback", p.stderr)
        bad = self.path("bad-keys")
        with open(bad, "w") as f:
            f.write("my-secret-key write\n")
        p = subprocess.run([GPUQ, "http", "--redis", self.redis.url, "--api-key-file", bad], capture_output=True,
                           text=True, timeout=10)
        self.assertEqual(p.returncode, 2)
        self.assertIn("bad-keys:1: want the key's SHA-256 digest", p.stderr)


class Hostile(HttpTest):
    """No worker: whatever reaches the queue stays there to be counted."""
    with_worker = False
    front_args = ("--max-body-bytes", "65536", "--connection-timeout", "2", "--request-timeout", "2",
                  "--max-concurrency", "3", "--max-queue", "3")

    def healthy(self):
        st, _, body = self.front.get("/healthz", timeout=5)
        self.assertEqual((st, body["status"]), (200, "ok"))

    def test_refused_requests_reach_nothing(self):
        big = {"model": "m", "input": "x" * 70000}
        st, _, err = self.front.post("/v1/embeddings", big)
        self.assertEqual((st, err["error"]["code"]), (413, "too_large"))
        # the same without a Content-Length: chunked, counted as it comes
        c = socket.create_connection(("127.0.0.1", self.front.port), timeout=10)
        c.sendall(b"POST /v1/embeddings HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n")
        for _ in range(20):
            c.sendall(b"1000\r\n" + b"x" * 4096 + b"\r\n")
        c.sendall(b"0\r\n\r\n")
        self.assertIn(b" 413 ", c.recv(65536))
        c.close()
        for body, code in [('{"model": "m", "input": ', "bad_request"), ("[1, 2]", "bad_request"),
                           ({"model": "m"}, "bad_request"), ({"model": "m", "input": [["a"]]}, "bad_request"),
                           ({"model": "m", "input": "x", "encoding_format": "hex"}, "bad_request"),
                           ({"model": "m", "input": "x", "dimensions": -3}, "bad_request"),
                           ({"model": 7, "input": "x"}, "bad_request")]:
            st, _, err = self.front.post("/v1/embeddings", body)
            self.assertEqual((st, err["error"]["code"]), (400, code), body)
            self.assertTrue(err["error"]["message"])
        st, _, err = self.front.post("/v1/embeddings", {"model": "m", "input": ["a"] * 10000},
                                     headers={})
        self.assertEqual(st, 413)   # 10,000 inputs: past the body limit here, past --max-inputs below
        big_front = self.start_front("--max-body-bytes", str(1 << 20))
        st, _, err = big_front.post("/v1/embeddings", {"model": "m", "input": ["a"] * 10000})
        self.assertEqual((st, err["error"]["code"]), (413, "too_large"))
        self.assertIn("--max-inputs", err["error"]["message"])
        st, _, err = self.front.request("POST", "/v1/embeddings", '{"input": "x"}', headers={"Content-Type": "text/plain"})
        self.assertEqual(st, 415)
        self.assertEqual(self.front.request("DELETE", "/v1/jobs")[0], 405)
        self.assertEqual(self.front.get("/v1/embeddings")[0], 405)
        self.assertEqual(self.front.get("/v1/models", headers={"Host": "rebound.example:80"})[0], 403)
        self.assertEqual(self.xlen(), 0)
        self.healthy()

    def test_slowloris_does_not_stop_others(self):
        slow = []
        for _ in range(20):     # more trickling sockets than request threads
            s = socket.create_connection(("127.0.0.1", self.front.port), timeout=10)
            s.sendall(b"POST /v1/embeddings HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n")
            slow.append(s)
        t0 = time.time()
        for i in range(8):
            for s in slow:
                try:
                    s.sendall(b"X-a: b\r\n")
                except OSError:
                    pass
            t = time.time()
            self.healthy()
            self.assertLess(time.time() - t, 1.0, "a request waited behind the trickling sockets")
            time.sleep(0.4)
        # an idle connection is closed after --connection-timeout
        idle = socket.create_connection(("127.0.0.1", self.front.port), timeout=10)
        idle.sendall(b"GET /healthz HTTP/1.1\r\n")
        t = time.time()
        self.assertEqual(idle.recv(100), b"")
        self.assertLess(time.time() - t, 5)
        for s in slow:
            s.close()
        self.assertEqual(self.xlen(), 0)
        self.assertGreater(time.time() - t0, 3)
        self.healthy()

    def test_timeout_queue_full_and_concurrency(self):
        # no worker: the job waits, the request ends at --request-timeout
        st, _, err = self.front.post("/v1/embeddings", {"model": "m", "input": "x"})
        self.assertEqual((st, err["error"]["code"], err["error"]["type"]), (504, "deadline_exceeded", "timeout_error"))
        self.assertEqual(self.xlen(), 1)
        job = {"op": "softmax", "inputs": {}}
        self.assertEqual(self.front.post("/v1/jobs", job)[0], 202)
        self.assertEqual(self.front.post("/v1/jobs", job)[0], 202)
        st, h, err = self.front.post("/v1/jobs", job)
        self.assertEqual((st, err["error"]["code"]), (429, "queue_full"))
        self.assertEqual(h.get("Retry-After"), "1")
        self.assertEqual(self.xlen(), 3)
        self.r.delete(self.client.key("jobs"))
        # three requests waiting at once fill --max-concurrency: the fourth is refused
        out = []
        threads = [threading.Thread(target=lambda: out.append(self.front.post("/v1/embeddings", {"model": "m", "input": "x"})[0]))
                   for _ in range(3)]
        for t in threads:
            t.start()
        self.wait_for(lambda: self.xlen() == 3, what="three waiting requests")
        st, h, err = self.front.post("/v1/embeddings", {"model": "m", "input": "x"})
        self.assertEqual((st, err["error"]["code"]), (429, "rate_limited"))
        for t in threads:
            t.join()
        self.assertEqual(sorted(out), [504, 504, 504])
        self.assertEqual(self.xlen(), 3)
        self.healthy()

    def test_stop_answers_waiting_requests(self):
        out = []
        t = threading.Thread(target=lambda: out.append(self.front.post("/v1/embeddings", {"model": "m", "input": "x"})))
        t.start()
        self.wait_for(lambda: self.xlen() == 1, what="a waiting request")
        self.assertEqual(self.front.stop(), 0)
        self.fronts.remove(self.front)
        t.join(timeout=10)
        self.assertEqual(out[0][0], 503)


if __name__ == "__main__":
    unittest.main()
