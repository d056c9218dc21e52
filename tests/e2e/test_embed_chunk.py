"""Long documents in chunks (the embed op's `chunk` param) through a real
worker, against a reference written from the protocol's definition on
Hugging Face `tokenizers` (its offsets and word ids) and the numpy encoder
(tests/ref/bert_ref.py): the windows' token ids, text indices and byte
spans, their embeddings, pooling, hostile params beside good jobs, and a
1 MB document as one job whose windows share batches with other jobs."""
import os
import sys
import time
import unittest

import numpy as np

from harness import from_tensor, tensor

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "ref"))
import pyenv  # noqa: E402,F401
try:
    import bert_ref  # noqa: E402,F401
    from tokenizers import Tokenizer  # noqa: E402
except ImportError as e:
    print(f"SKIPPED: {e} (scripts/setup installs tokenizers)")
    sys.exit(77)

from test_embed import MODEL, EmbedTest, needs_model, tokens_of  # noqa: E402


def i64(t):
    return np.frombuffer(t["data"], dtype="<i8")


def i32(t):
    return np.frombuffer(t["data"], dtype="<i4")


def tokens_with_spans(tok, text):
    """ids, byte spans and word starts of text, as tokenizers has them."""
    e = tok.encode(text, add_special_tokens=False)
    at = [0]
    for ch in text:
        at.append(at[-1] + len(ch.encode()))
    spans = [(at[a], at[b]) for a, b in e.offsets]
    w = e.word_ids
    starts = [i == 0 or w[i] is None or w[i] != w[i - 1] for i in range(len(w))]
    return e.ids, spans, starts


def windows(n, room, overlap, starts):
    """The protocol's windows over n tokens (ops/embed_chunk.c says the same
    in C): [s, e) pairs."""
    if n == 0:
        return [(0, 0)]
    out, s = [], 0
    while True:
        e = min(s + room, n)
        if e < n and not starts[e]:
            b = e
            while b > s + 1 and not starts[b]:
                b -= 1
            if starts[b] and b - overlap > s:
                e = b
        out.append((s, e))
        if e == n:
            return out
        nxt = b = e - overlap
        while b > s + 1 and not starts[b]:
            b -= 1
        if starts[b] and b > s:
            nxt = b
        else:
            b = nxt
            while b < e and not starts[b]:
                b += 1
            if b < e:
                nxt = b
        s = nxt


def reference(tok, texts, tokens, overlap, cls, sep):
    """Per window: (text index, its ids with [CLS] and [SEP], char_start, char_end)."""
    rows = []
    for d, text in enumerate(texts):
        ids, spans, starts = tokens_with_spans(tok, text)
        for s, e in windows(len(ids), tokens - 2, overlap, starts):
            lo = spans[s][0] if e > s else 0
            hi = spans[e - 1][1] if e > s else lo
            rows.append((d, [cls] + ids[s:e] + [sep], lo, hi))
    return rows


class Chunks(EmbedTest):
    def setUp(self):
        super().setUp()
        self.tiny_model()
        self.worker("--model", f"m={self.folder}")
        self.hf = self.tok._tokenizer
        self.hf.no_truncation()
        self.hf.no_padding()
        self.cls, self.sep = self.hf.token_to_id("[CLS]"), self.hf.token_to_id("[SEP]")

    def check(self, r, texts, tokens, overlap):
        want = reference(self.hf, texts, tokens, overlap, self.cls, self.sep)
        y = self.ok(r)
        o = r["outputs"]
        self.assertEqual(len(y), len(want))
        self.assertEqual(list(i32(o["chunk_of"])), [w[0] for w in want])
        self.assertEqual(list(i64(o["char_start"])), [w[2] for w in want])
        self.assertEqual(list(i64(o["char_end"])), [w[3] for w in want])
        self.assertEqual(list(tokens_of(r)), [len(w[1]) for w in want])
        self.assertLessEqual(max(len(w[1]) for w in want), tokens)
        ref = np.array([self.ref.embed(w[1]) for w in want])
        np.testing.assert_allclose(y, ref, atol=2e-5)
        return want, y

    def test_windows_against_reference(self):
        long_text = " ".join(pyenv.corpus()[:12])
        word = "Pneumonoultramicroscopicsilicovolcanoconiosis" * 2      # more pieces than a window
        texts = [long_text, "short one", "", word + " and " + long_text[:300], "[MASK] inside " * 20]
        for tokens, overlap in ((16, 4), (16, 0), (40, 13)):
            [r] = self.run_jobs([self.embed(texts, chunk={"tokens": tokens, "overlap": overlap})])
            want, _ = self.check(r, texts, tokens, overlap)
            self.assertGreater(len(want), 20)

    def test_pool(self):
        texts = [" ".join(pyenv.corpus()[:6]), "one short text"]
        plain, pooled, no_norm = self.run_jobs([
            self.embed(texts, chunk={"tokens": 24, "overlap": 6}),
            self.embed(texts, chunk={"tokens": 24, "overlap": 6, "pool": True}),
            self.embed(texts, chunk={"tokens": 24, "overlap": 6, "pool": True}, normalize=False)])
        rows = self.ok(plain)
        of = i32(plain["outputs"]["chunk_of"])
        y = self.ok(pooled)
        self.assertEqual(y.shape, (2, rows.shape[1]))
        self.assertEqual(list(i32(pooled["outputs"]["chunks"])), [int((of == d).sum()) for d in range(2)])
        for d in range(2):
            m = rows[of == d].mean(0)
            np.testing.assert_allclose(y[d], m / np.linalg.norm(m), atol=1e-5)
            self.assertEqual(tokens_of(pooled)[d], tokens_of(plain)[of == d].sum())
        self.assertNotIn("char_start", pooled["outputs"])
        raw = self.ok(no_norm)
        self.assertGreater(abs(np.linalg.norm(raw[0]) - 1), 1e-3)

    def test_hostile_params_beside_good_jobs(self):
        good = self.embed(["a b c d e f"] * 2, chunk={"tokens": 4, "overlap": 1})
        bad = [self.embed("x", chunk=5), self.embed("x", chunk={"tokens": 2}),
               self.embed("x", chunk={"tokens": 16, "overlap": 14}),
               self.embed("x", chunk={"tokens": 16, "overlap": -1}),
               self.embed("x", chunk={"overlap": 3}), self.embed("x", chunk={"tokens": 16, "stride": 1}),
               self.embed("x", chunk={"tokens": 16, "pool": 1}), self.embed("x", chunk={"tokens": "16"}),
               self.embed("x", chunk={"tokens": 10 ** 6}),
               {"op": "embed", "model": "m", "inputs": {"input_ids": tensor(np.ones((1, 3), np.int32))},
                "params": {"chunk": {"tokens": 8}}}]
        res = self.run_jobs([good] + bad + [good])
        for r in res[1:-1]:
            self.assertEqual(r["status"], "error", r)
            self.assertEqual(r["error"]["code"], "bad_request", r["error"])
            self.assertIn("chunk", r["error"]["message"])
        for r in (res[0], res[-1]):
            self.check(r, ["a b c d e f"] * 2, 4, 1)

    def test_text_over_64k_needs_chunk(self):
        big = "word " * 20000
        whole, chunked = self.run_jobs([self.embed(big), self.embed(big, chunk={"tokens": 64, "overlap": 8})])
        self.assertEqual(whole["error"]["code"], "bad_request")
        self.assertIn("more than 65536", whole["error"]["message"])
        self.assertEqual(self.ok(chunked).shape[0], len(reference(self.hf, [big], 64, 8, 0, 0)))

    def test_one_megabyte_document(self):
        """One job, one result; every byte from the first token to the last
        in some window; spans as the reference's; sampled windows equal to
        the same ids embedded on their own; a small job enqueued after it is
        answered before it (its windows are cut into batches beside it)."""
        corpus = " ".join(pyenv.corpus())
        doc = (corpus + "\n") * (1_000_000 // len(corpus.encode()) + 1)
        doc = doc.encode()[:1_000_000].decode("utf-8", "ignore")
        # small batches, so that the document takes a few hundred of them
        self.workers.pop().stop()
        self.worker("--model", f"m={self.folder}", "--max-batch-tokens", "512")
        job = self.embed(doc, chunk={"tokens": 64, "overlap": 16})
        reply = self.client.key("reply:embed")
        self.client.enqueue(dict(job, id="big", reply_to=reply))
        t0 = time.time()
        while not self.r.xpending(self.client.key("jobs"), "workers")["pending"] and time.time() < t0 + 10:
            time.sleep(0.01)    # the worker holds the document
        time.sleep(0.3)
        self.client.enqueue(dict(self.embed("a small job"), id="small", reply_to=reply))
        order = [self.client.wait(reply, timeout=300) for _ in range(2)]
        self.assertEqual([r["id"] for r in order], ["small", "big"])
        r = order[1]
        y = self.ok(r)
        o = r["outputs"]
        lo, hi = i64(o["char_start"]), i64(o["char_end"])
        want = reference(self.hf, [doc], 64, 16, self.cls, self.sep)
        self.assertEqual(len(y), len(want))
        self.assertEqual(list(lo), [w[2] for w in want])
        self.assertEqual(list(hi), [w[3] for w in want])
        self.assertTrue((lo[1:] <= hi[:-1]).all(), "windows overlap, so no byte between them is left out")
        self.assertEqual((lo[0], hi[-1]), (want[0][2], want[-1][3]))
        pick = np.random.default_rng(1).choice(len(want), 12, replace=False)
        seqs = [want[i][1] for i in pick]
        width = max(map(len, seqs))
        ids = np.array([s + [0] * (width - len(s)) for s in seqs], np.int32)
        mask = np.array([[1] * len(s) + [0] * (width - len(s)) for s in seqs], np.int32)
        [one] = self.run_jobs([{"op": "embed", "model": "m",
                                "inputs": {"input_ids": tensor(ids), "attention_mask": tensor(mask)}}])
        np.testing.assert_allclose(y[pick], self.ok(one), atol=1e-6)


@needs_model
class RealModelChunks(EmbedTest):
    def test_minilm_windows(self):
        self.worker("--model", f"m={MODEL}")
        tok = Tokenizer.from_file(os.path.join(MODEL, "tokenizer.json"))
        tok.no_truncation()
        tok.no_padding()
        ref = bert_ref.Bert(MODEL)
        texts = [" ".join(pyenv.corpus()[:20]), "naïve café — ünïcödé, 中文 and more " * 12]
        [r] = self.run_jobs([self.embed(texts, chunk={"tokens": 96, "overlap": 24}, prompt="passage: ")])
        y = self.ok(r)
        o = r["outputs"]
        p = len(tok.encode("passage:", add_special_tokens=False).ids)
        want = []
        for d, text in enumerate(texts):
            ids, spans, starts = tokens_with_spans(tok, "passage: " + text)
            for s, e in windows(len(ids) - p, 96 - 2 - p, 24, starts[p:]):
                sp = spans[p:]
                want.append((d, [101] + ids[:p] + ids[p + s:p + e] + [102], sp[s][0] - 9, sp[e - 1][1] - 9))
        self.assertEqual(list(i32(o["chunk_of"])), [w[0] for w in want])
        self.assertEqual(list(i64(o["char_start"])), [w[2] for w in want])
        self.assertEqual(list(i64(o["char_end"])), [w[3] for w in want])
        cos = [float(np.dot(y[i], ref.embed(w[1]))) for i, w in enumerate(want)]
        self.assertGreaterEqual(min(cos), 0.9999)


if __name__ == "__main__":
    unittest.main()
