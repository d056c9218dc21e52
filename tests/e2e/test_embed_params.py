"""The embed op's parameters for retrieval pipelines, on a random tiny encoder
against the numpy reference (tests/ref): prompts (the job's, the folder's by
name, the folder's default), Matryoshka dimensions, truncation the caller
chooses, and compact dtypes with sentence-transformers' quantize_embeddings
semantics (tests/ref/st_ref.py, which its __main__ checks against
sentence-transformers itself where that is installed)."""
import json
import os
import shutil
import subprocess
import sys
import unittest

import numpy as np

from harness import WorkerTest, tensor

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "ref"))
import pyenv  # noqa: E402,F401  (puts the project's PyPI folder on the path)
try:
    import bert_ref  # noqa: E402
    import st_ref  # noqa: E402
except ImportError as e:
    print(f"SKIPPED: {e} (scripts/setup installs tokenizers)")
    sys.exit(77)

from test_embed import EmbedTest, tokens_of  # noqa: E402

TEXTS = ["The weather is lovely today.", "It's sunny!", "qwerty uiop asdf " * 3, "[MASK] x",
         "a b c d e f g h"]
PROMPTS = {"query": "query: ", "passage": "passage: "}


class EmbedParams(EmbedTest):
    def setUp(self):
        super().setUp()
        self.tiny_model()

    def ids(self, text, max_length=64, side="right"):
        tok = self.tok._tokenizer       # the Tokenizer itself: truncation from either side
        tok.enable_truncation(max_length=max_length, direction=side)
        return tok.encode(text).ids

    def want(self, texts, prompt=""):
        return np.array([self.ref.embed(self.ids(prompt + t)) for t in texts])

    def with_prompts(self, default=None):
        folder = self.path("prompted")
        shutil.copytree(self.folder, folder)
        cfg = {"prompts": PROMPTS}
        if default:
            cfg["default_prompt_name"] = default
        with open(os.path.join(folder, "config_sentence_transformers.json"), "w") as f:
            json.dump(cfg, f)
        return folder

    def test_prompts(self):
        self.worker("--model", f"m={self.folder}", "--model", f"p={self.with_prompts(default='query')}")
        r = self.run_jobs([self.embed(TEXTS, model="p"),                          # the folder's default
                           self.embed(TEXTS, model="p", prompt_name="passage"),
                           self.embed(TEXTS, model="m", prompt="search_query: "),
                           self.embed(TEXTS, model="p", prompt=""),               # none at all
                           self.embed(TEXTS, model="m"),
                           self.embed("x", model="p", prompt_name="nope"),
                           self.embed("x", model="m", prompt_name="query"),
                           self.embed("x", model="p", prompt="a", prompt_name="query")])
        for k, prompt in enumerate(["query: ", "passage: ", "search_query: ", "", ""]):
            np.testing.assert_allclose(self.ok(r[k]), self.want(TEXTS, prompt), atol=1e-4, err_msg=prompt)
            self.assertEqual(list(tokens_of(r[k])), [len(self.ids(prompt + t)) for t in TEXTS],
                             "token counts include the prompt")
        for k, msg in ((5, "no prompt named 'nope'"), (6, "no prompt named 'query'"), (7, "not both")):
            self.assertEqual(r[k]["error"]["code"], "bad_request")
            self.assertIn(msg, r[k]["error"]["message"])

    def test_a_default_prompt_that_is_not_a_prompt_is_refused_at_start(self):
        folder = self.with_prompts()
        with open(os.path.join(folder, "config_sentence_transformers.json"), "w") as f:
            json.dump({"prompts": PROMPTS, "default_prompt_name": "doc"}, f)
        from harness import GPUQ
        p = subprocess.run([GPUQ, "worker", "--redis", self.redis.url, "--backend", "cpu", "--model",
                            f"p={folder}"], capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 2)
        self.assertIn("default_prompt_name doc is not one of its prompts", p.stderr)

    def test_dimensions(self):
        self.worker("--model", f"m={self.folder}")
        full = self.want(TEXTS)
        r = self.run_jobs([self.embed(TEXTS, dimensions=16), self.embed(TEXTS, dimensions=16, normalize=False),
                           self.embed(TEXTS, dimensions=64), self.embed("x", dimensions=65),
                           self.embed("x", dimensions=0)])
        np.testing.assert_allclose(self.ok(r[0]), st_ref.truncate(full, 16, normalize=True), atol=1e-4)
        raw = np.array([self.ref.embed(self.ids(t), normalize=False) for t in TEXTS])
        np.testing.assert_allclose(self.ok(r[1]), raw[:, :16], atol=1e-4)
        np.testing.assert_allclose(self.ok(r[2]), full, atol=1e-4)
        for k in (3, 4):
            self.assertEqual(r[k]["error"]["code"], "bad_request")
            self.assertIn("dimensions must be 1 to 64", r[k]["error"]["message"])

    def test_truncation(self):
        self.worker("--model", f"m={self.folder}")
        long = " ".join(f"w{i}" for i in range(80))
        r = self.run_jobs([self.embed([long, "short"], truncate=False), self.embed(["short"], truncate=False),
                           self.embed([long, "short"], truncation_direction="left"),
                           self.embed([long], max_length=10, truncation_direction="left"),
                           self.embed("x", truncation_direction="middle")])
        self.assertEqual(r[0]["error"]["code"], "bad_request")
        self.assertIn(f"text 0 has {len(self.ids(long, 100000))} tokens, more than max_length 64",
                      r[0]["error"]["message"])
        np.testing.assert_allclose(self.ok(r[1]), self.want(["short"]), atol=1e-4)
        left = [self.ids(long, 64, "left"), self.ids("short", 64, "left")]
        np.testing.assert_allclose(self.ok(r[2]), [self.ref.embed(i) for i in left], atol=1e-4)
        self.assertEqual(list(tokens_of(r[2])), [64, len(left[1])])
        np.testing.assert_allclose(self.ok(r[3])[0], self.ref.embed(self.ids(long, 10, "left")), atol=1e-4)
        self.assertIn("right or left", r[4]["error"]["message"])

    def test_compact_dtypes(self):
        self.worker("--model", f"m={self.folder}")
        f32 = self.ok(self.run_jobs([self.embed(TEXTS)])[0])
        ref = self.want(TEXTS)
        kinds = ["f16", "int8", "uint8", "binary", "ubinary"]
        ranges = np.stack([ref.min(axis=0) - 0.01, ref.max(axis=0) + 0.01])
        r = self.run_jobs([self.embed(TEXTS, dtype=k) for k in kinds] +
                          [self.embed(TEXTS, dtype="int8", ranges=ranges.ravel().tolist()),
                           self.embed(TEXTS, dtype="binary", dimensions=32),
                           self.embed("x", dtype="int4"), self.embed("x", dtype="binary", dimensions=12),
                           self.embed("x", dtype="int8", ranges=[1, 2]),
                           self.embed("x", ranges=ranges.ravel().tolist()),
                           self.embed("x", dtype="uint8"),
                           self.embed("x", dtype="uint8", ranges=ranges.ravel().tolist())])
        got = {k: r[i]["outputs"]["y"] for i, k in enumerate(kinds)}
        self.assertEqual([got[k]["dtype"] for k in kinds], ["f16", "i8", "u8", "i8", "u8"])
        y16 = np.frombuffer(got["f16"]["data"], "<f2").reshape(got["f16"]["shape"])
        np.testing.assert_array_equal(y16, f32.astype(np.float16), "f16 is the f32 output, rounded")
        np.testing.assert_allclose(y16.astype(np.float32), ref, atol=2e-3)
        for k, dt in (("int8", "i1"), ("uint8", "u1")):
            y = np.frombuffer(got[k]["data"], dt).reshape(got[k]["shape"]).astype(int)
            self.assertLessEqual(np.abs(y - st_ref.quantize(ref, k).astype(int)).max(), 1, k)
            np.testing.assert_array_equal(y, st_ref.quantize(f32, k).astype(int), k)
        for k, dt in (("binary", "i1"), ("ubinary", "u1")):
            y = np.frombuffer(got[k]["data"], dt).reshape(got[k]["shape"])
            self.assertEqual(got[k]["shape"], [len(TEXTS), 8])
            np.testing.assert_array_equal(y, st_ref.quantize(f32, k), k)
            sure = np.abs(ref) > 1e-4      # signs the reference is sure of agree too
            bits = np.unpackbits(y.view(np.uint8) ^ (0x80 if k == "binary" else 0), axis=1).astype(bool)
            np.testing.assert_array_equal(bits[sure], (ref > 0)[sure], k)
        one = np.frombuffer(r[12]["outputs"]["y"]["data"], "u1").reshape(1, 64).astype(int)
        self.assertLessEqual(np.abs(one - st_ref.quantize(self.want(["x"]), "uint8", ranges)).max(), 1)
        y = np.frombuffer(r[5]["outputs"]["y"]["data"], "i1").reshape(len(TEXTS), 64).astype(int)
        np.testing.assert_array_equal(y, st_ref.quantize(f32, "int8", ranges).astype(int))
        b32 = np.frombuffer(r[6]["outputs"]["y"]["data"], "i1").reshape(len(TEXTS), 4)
        np.testing.assert_array_equal(b32, st_ref.quantize(st_ref.truncate(f32, 32, normalize=True), "binary"))
        for k, msg in ((7, "dtype must be"), (8, "multiple of 8"), (9, "ranges must be 128 finite numbers"),
                       (10, "ranges go with dtype int8 or uint8"), (11, "needs ranges for a job of one text")):
            self.assertEqual(r[k]["error"]["code"], "bad_request")
            self.assertIn(msg, r[k]["error"]["message"])

    def test_a_text_repeated_in_a_batch_is_computed_once(self):
        """Jobs that repeat a text (with the same prompt and truncation) share
        one computed row: a device with room for one sequence (nomem-above=1)
        takes the whole batch without running it in parts, and every row is
        the text's embedding, whatever dimensions or dtype each job asks."""
        w = self.worker("--model", f"m={self.folder}", "--max-delay-us", "500000",
                        env={"GPUQ_FAULT": "nomem-above=1"})
        text = TEXTS[0]
        r = self.run_jobs([self.embed([text] * 4), self.embed(text), self.embed(text, dimensions=8),
                           self.embed([text, text], dtype="ubinary"), self.embed(text, prompt="")])
        want = self.want([text])
        np.testing.assert_allclose(self.ok(r[0]), np.repeat(want, 4, axis=0), atol=1e-4)
        np.testing.assert_allclose(self.ok(r[1]), want, atol=1e-4)
        np.testing.assert_allclose(self.ok(r[2]), st_ref.truncate(want, 8, normalize=True), atol=1e-4)
        bits = np.frombuffer(r[3]["outputs"]["y"]["data"], "u1").reshape(2, 8)
        np.testing.assert_array_equal(bits, st_ref.quantize(np.repeat(self.ok(r[1]), 2, axis=0), "ubinary"))
        np.testing.assert_allclose(self.ok(r[4]), want, atol=1e-4)
        self.assertEqual({x["timing"]["batch_size"] for x in r}, {9}, "one batch of 9 rows")
        self.assertNotIn("running it in parts", w.output())

    def metric(self, port, name):
        import urllib.request
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
        return sum(float(line.split()[-1]) for line in body.splitlines() if line.startswith(name))

    def test_cache(self):
        """With --embed-cache-ttl, a text embedded in the last S seconds by any
        worker is read from Redis: the same bytes, every job's dimensions and
        dtype applied after; the metrics count the rows found and missed."""
        from harness import free_port
        texts = [f"text number {i} " + TEXTS[i % len(TEXTS)] for i in range(1000)]
        port = free_port()
        self.worker("--model", f"m={self.folder}", "--embed-cache-ttl", "60", "--metrics-addr", f"127.0.0.1:{port}")
        first = self.run_jobs([self.embed(t) for t in texts])
        hit = 'gpuq_cache_rows_total{result="hit"}'
        miss = 'gpuq_cache_rows_total{result="miss"}'
        self.assertEqual(self.metric(port, miss), 1000)
        keys = self.r.keys(self.client.key("cache:*"))
        self.assertEqual(len(keys), 1000)
        self.assertTrue(all(0 < self.r.ttl(k) <= 60 for k in keys))
        # 10,000 jobs over those 1,000 texts in all: the 9,000 repeats are read, none computed
        jobs = [self.embed(texts[i % 1000]) for i in range(9000)] + [self.embed(texts[:8], dimensions=16),
                                                                       self.embed(texts[:8], dtype="ubinary")]
        again = self.run_jobs(jobs)
        self.assertEqual(self.metric(port, hit), 9000 + 16)
        self.assertEqual(self.metric(port, miss), 1000, "nothing computed twice")
        for i in range(9000):
            self.assertEqual(again[i]["outputs"]["y"]["data"], first[i % 1000]["outputs"]["y"]["data"])
            self.assertEqual(again[i]["timing"]["batch_size"], 0, "answered without compute")
        y = np.concatenate([self.ok(r) for r in first[:8]])
        np.testing.assert_allclose(self.ok(again[9000]), st_ref.truncate(y, 16, normalize=True), atol=1e-6)
        bits = np.frombuffer(again[9001]["outputs"]["y"]["data"], "u1").reshape(8, 8)
        np.testing.assert_array_equal(bits, st_ref.quantize(y, "ubinary"))
        # another worker, a fresh process, finds them too; another prompt does not
        self.workers[0].stop()
        port2 = free_port()
        self.worker("--model", f"m={self.folder}", "--embed-cache-ttl", "60", "--metrics-addr", f"127.0.0.1:{port2}")
        r = self.run_jobs([self.embed(texts[:10]), self.embed(texts[:10], prompt="query: ")])
        self.assertEqual(r[0]["outputs"]["y"]["data"], b"".join(x["outputs"]["y"]["data"] for x in first[:10]))
        self.assertEqual((self.metric(port2, hit), self.metric(port2, miss)), (10, 10))
        np.testing.assert_allclose(self.ok(r[1]), self.want(texts[:10], "query: "), atol=1e-4)
        # a model changed behind the same name never reads its predecessor's
        self.workers[1].stop()
        with open(os.path.join(self.folder, "config.json")) as f:
            cfg = json.load(f)
        cfg["a_new_field"] = 1
        with open(os.path.join(self.folder, "config.json"), "w") as f:
            json.dump(cfg, f)
        port3 = free_port()
        self.worker("--model", f"m={self.folder}", "--embed-cache-ttl", "60", "--metrics-addr", f"127.0.0.1:{port3}")
        self.run_jobs([self.embed(texts[:10])])
        self.assertEqual((self.metric(port3, hit), self.metric(port3, miss)), (0, 10))


if __name__ == "__main__":
    unittest.main()
