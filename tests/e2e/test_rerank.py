"""rerank and classify through a worker, on random tiny cross-encoder and
classifier folders of the families' exact shape (tests/ref/family_models.py)
against the numpy reference (tests/ref/encoder_ref.py, checked against
transformers and sentence-transformers' CrossEncoder): pairs tokenized as
`tokenizers` does (token types, longest-first truncation), scores and
order, activations, labels, top_k, batching invariance (one job of N
documents against N jobs, and a job larger than a batch), and bad jobs
beside good ones."""
import argparse
import os
import sys
import unittest

import numpy as np

from harness import from_tensor

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "ref"))
import pyenv  # noqa: E402,F401  (puts the project's PyPI folder on the path)
try:
    import encoder_ref  # noqa: E402
    import family_models  # noqa: E402
    from tokenizers import Tokenizer  # noqa: E402
except ImportError as e:
    print(f"SKIPPED: {e} (scripts/setup installs tokenizers and sentencepiece)")
    sys.exit(77)

from test_embed import EmbedTest  # noqa: E402

QUERY = "how is the weather in Paris today"
DOCS = ["It is sunny in Paris, 24 degrees.", "Le chat dort sur le canapé.", "", "weather " * 50,
        "Paris weather: rain until the evening.", "東京は晴れです。"]


def folder_of(path, family, labels, score_activation=None, seed=5, save=None):
    a = argparse.Namespace(pooling=None, include_prompt=1, dense=None, dense_act="tanh", dense_bias=1,
                           normalize=False, head=["classify", str(labels)], score_activation=score_activation,
                           positions=None, hidden_act="gelu", prefix=None, dtype="f32")
    family_models.write(family, path, a, np.random.default_rng(seed), save=save)
    return path


class Scoring(EmbedTest):
    def setUp(self):
        super().setUp()
        self.ce = folder_of(self.path("ce"), "bert", 1)
        self.nli = folder_of(self.path("nli"), "xlm-roberta", 3)
        self.tanh = folder_of(self.path("tanh"), "distilbert", 1, score_activation="tanh")

    def ref(self, folder, pairs=None, texts=None, max_length=None):
        """(logits, scores after the folder's CrossEncoder activation) per row."""
        ref = encoder_ref.load(folder)
        tok = Tokenizer.from_file(os.path.join(folder, "tokenizer.json"))
        tok.no_padding()
        tok.enable_truncation(max_length=max_length or ref.max_length)   # longest first, as CrossEncoder
        encs = [tok.encode(a, b) for a, b in pairs] if pairs else [tok.encode(t) for t in texts]
        logits = np.array([ref.logits(e.ids, e.type_ids) for e in encs])
        return logits, np.array([ref.scores(e.ids, e.type_ids) for e in encs])

    def job(self, op, model, inputs, **params):
        return {"op": op, "model": model, "inputs": inputs, "params": params}

    def test_rerank_against_the_reference(self):
        self.worker("--model", f"ce={self.ce}", "--model", f"t={self.tanh}", "--max-batch-tokens", "64")
        pairs = [(QUERY, d) for d in DOCS]
        r = self.run_jobs([self.job("rerank", "ce", {"query": QUERY, "documents": DOCS}, return_text=True, top_n=3),
                           self.job("rerank", "ce", {"pairs": [list(p) for p in pairs]}, raw_scores=True),
                           self.job("rerank", "t", {"query": QUERY, "documents": DOCS}),
                           self.job("rerank", "ce", {"query": QUERY, "documents": DOCS}, max_length=12)]
                          + [self.job("rerank", "ce", {"query": QUERY, "documents": [d]}) for d in DOCS])
        logits, want = self.ref(self.ce, pairs)
        for x in r:
            self.assertEqual(x["status"], "ok", x.get("error"))
        scores = from_tensor(r[0]["outputs"]["scores"])
        np.testing.assert_allclose(scores, want[:, 0], rtol=1e-4, atol=1e-6)
        order = list(np.argsort(-want[:, 0], kind="stable")[:3])
        self.assertEqual(list(from_tensor(r[0]["outputs"]["order"])), order)
        self.assertEqual(r[0]["outputs"]["texts"], [DOCS[i] for i in order])
        np.testing.assert_allclose(from_tensor(r[1]["outputs"]["scores"]), logits[:, 0], rtol=1e-4, atol=1e-6)
        self.assertEqual(len(from_tensor(r[1]["outputs"]["order"])), len(DOCS))
        _, tanh = self.ref(self.tanh, pairs)
        np.testing.assert_allclose(from_tensor(r[2]["outputs"]["scores"]), tanh[:, 0], rtol=1e-4, atol=1e-6)
        self.assertTrue(np.all(np.abs(tanh) < 1) and np.any(tanh < 0))      # tanh, not sigmoid
        _, short = self.ref(self.ce, pairs, max_length=12)                  # the document cut, the query kept
        np.testing.assert_allclose(from_tensor(r[3]["outputs"]["scores"]), short[:, 0], rtol=1e-4, atol=1e-6)
        # one job of N documents, split over batches of 64 tokens, against N jobs of one
        alone = np.concatenate([from_tensor(x["outputs"]["scores"]) for x in r[4:]])
        np.testing.assert_allclose(alone, scores, atol=2e-6)

    def test_classify_against_the_reference(self):
        self.worker("--model", f"nli={self.nli}", "--model", f"ce={self.ce}")
        pairs = [["A man plays a guitar.", "Someone makes music."], ["A man plays a guitar.", "Nobody is there."]]
        r = self.run_jobs([self.job("classify", "nli", {"text": DOCS}, top_k=2),
                           self.job("classify", "nli", {"pairs": pairs}),
                           self.job("classify", "nli", {"text": DOCS[0]}, function="none"),
                           self.job("classify", "ce", {"text": DOCS[:2]}),
                           self.job("classify", "nli", {"text": DOCS[:2]}, function="sigmoid")])
        for x in r:
            self.assertEqual(x["status"], "ok", x.get("error"))
        logits, _ = self.ref(self.nli, texts=DOCS)
        soft = np.exp(logits - logits.max(1, keepdims=True))
        soft /= soft.sum(1, keepdims=True)
        got = from_tensor(r[0]["outputs"]["scores"])
        np.testing.assert_allclose(got, soft, rtol=1e-4, atol=1e-6)
        self.assertEqual(r[0]["outputs"]["labels"], ["negative", "positive", "neutral"])
        np.testing.assert_array_equal(from_tensor(r[0]["outputs"]["top"]), np.argsort(-soft, 1, kind="stable")[:, :2])
        pl, _ = self.ref(self.nli, pairs=[tuple(p) for p in pairs])
        ps = np.exp(pl - pl.max(1, keepdims=True))
        np.testing.assert_allclose(from_tensor(r[1]["outputs"]["scores"]), ps / ps.sum(1, keepdims=True),
                                   rtol=1e-4, atol=1e-6)
        self.assertNotIn("top", r[1]["outputs"])
        np.testing.assert_allclose(from_tensor(r[2]["outputs"]["scores"]), logits[:1], rtol=1e-4, atol=1e-5)
        one, _ = self.ref(self.ce, texts=DOCS[:2])                          # one label: sigmoid by default
        np.testing.assert_allclose(from_tensor(r[3]["outputs"]["scores"]), 1 / (1 + np.exp(-one)), rtol=1e-4)
        np.testing.assert_allclose(from_tensor(r[4]["outputs"]["scores"]), 1 / (1 + np.exp(-logits[:2])),
                                   rtol=1e-4, atol=1e-6)

    def test_bad_jobs_beside_good_ones(self):
        self.worker("--model", f"ce={self.ce}", "--model", f"nli={self.nli}")
        good = self.job("rerank", "ce", {"query": QUERY, "documents": DOCS[:2]})
        bad = [
            (self.job("rerank", "ce", {"query": QUERY}), "bad_request", "query and documents, or pairs"),
            (self.job("rerank", "ce", {"query": [QUERY, QUERY], "documents": DOCS}), "bad_request", "query is a str"),
            (self.job("rerank", "ce", {"pairs": [["a", "b"], ["c"]]}), "bad_request", "pair 1 is not an array of two"),
            (self.job("rerank", "ce", {"pairs": [["a", 3]]}), "bad_request", "pair 0"),
            (self.job("rerank", "ce", {"query": QUERY, "documents": []}), "bad_request", "empty list"),
            (self.job("rerank", "ce", {"query": QUERY, "documents": DOCS}, top_n=0), "bad_request", "top_n"),
            (self.job("rerank", "ce", {"query": QUERY, "documents": DOCS}, max_length=1), "bad_request", "max_length"),
            (self.job("rerank", "ce", {"query": QUERY, "documents": DOCS}, temperature=2), "bad_request", "temperature"),
            (self.job("rerank", "nli", {"query": QUERY, "documents": DOCS}), "unknown_model", "3 labels"),
            (self.job("rerank", "m", {"query": QUERY, "documents": DOCS}), "unknown_model", "sequence classifier"),
            (self.job("classify", "nli", {"text": "x", "pairs": [["a", "b"]]}), "bad_request", "not both"),
            (self.job("classify", "nli", {"text": [["a", "b"]]}), "bad_request", "text is a str"),
            (self.job("classify", "nli", {"text": "x"}, function="relu"), "bad_request", "softmax, sigmoid or none"),
            (self.job("classify", "nli", {"text": "x"}, top_k=4), "bad_request", "top_k must be 1 to 3"),
            (self.job("embed", "ce", {"text": "x"}), "unknown_model", "model 'ce' is a sequence classifier"),
            (self.job("embed", "nli", {"text": [["a", "b"]]}), "unknown_model", "sequence classifier"),
        ]
        r = self.run_jobs([good] + [b for b, _, _ in bad] + [good])
        for x in (r[0], r[-1]):
            self.assertEqual(x["status"], "ok", x.get("error"))
        for x, (_, code, words) in zip(r[1:-1], bad):
            self.assertEqual((x["status"], x["error"]["code"]), ("error", code), x)
            self.assertIn(words, x["error"]["message"])

    def test_overflow_is_an_error(self):
        """A cross-encoder whose feed-forward goes past f16's range would
        score NaN: with --precision f16 its rerank and classify jobs get
        an error that says so, the other model's job beside them its
        scores."""
        folder_of(self.path("loud"), "bert", 1, save=family_models.scaled(3e4, "intermediate.dense.weight"))
        self.worker("--model", f"loud={self.path('loud')}", "--model", f"ce={self.ce}", "--precision", "f16")
        r = self.run_jobs([self.job("rerank", "loud", {"query": QUERY, "documents": DOCS[:2]}),
                           self.job("classify", "loud", {"text": DOCS[:2]}),
                           self.job("rerank", "ce", {"query": QUERY, "documents": DOCS[:2]})])
        for x, op in zip(r[:2], ("rerank", "classify")):
            self.assertEqual((x["status"], x["error"]["code"]), ("error", "internal"), x)
            self.assertIn(f"{op}: the model's output is not finite", x["error"]["message"])
        self.assertEqual(r[2]["status"], "ok", r[2].get("error"))


if __name__ == "__main__":
    unittest.main()
