"""Encoder families through a worker: an XLM-RoBERTa folder (Unigram
tokenizer with SentencePiece's compiled normalizer) and an MPNet folder
that ends in a Dense module, served side by side by one worker, each
job's rows equal to the numpy reference (tests/ref/encoder_ref.py);
pooling, dimensions and bf16 on them; a job for a family's model
beside bad ones; and the start log naming each family."""
import argparse
import os
import subprocess
import sys
import unittest

import numpy as np

from harness import BACKEND, GPUQ, tensor

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "ref"))
import pyenv  # noqa: E402,F401  (puts the project's PyPI folder on the path)
try:
    import encoder_ref  # noqa: E402
    import family_models  # noqa: E402
    from tokenizers import Tokenizer  # noqa: E402
except ImportError as e:
    print(f"SKIPPED: {e} (scripts/setup installs tokenizers and sentencepiece)")
    sys.exit(77)

from test_embed import EmbedTest, tokens_of  # noqa: E402

TEXTS = ["The weather is lovely today.", "Der Himmel ist heute blau, né?", "Съешь же ещё этих мягких булок",
         "東京は晴れです。", "", "word " * 80]


def folder_of(path, family, pooling, dense, normalize):
    a = argparse.Namespace(pooling=pooling, include_prompt=1, dense=dense or None, dense_act="tanh", dense_bias=1,
                           normalize=normalize, head=None, score_activation=None, positions=None, hidden_act="gelu",
                           prefix=None, dtype="f32")
    family_models.write(family, path, a, np.random.default_rng(3))
    return path


class Families(EmbedTest):
    def setUp(self):
        super().setUp()
        self.xlmr = folder_of(self.path("xlmr"), "xlm-roberta", "mean", 0, True)
        self.mpnet = folder_of(self.path("mpnet"), "mpnet", "mean", 24, True)

    def want(self, folder, texts, precision="f32", **kw):
        ref = encoder_ref.load(folder, precision)
        tok = Tokenizer.from_file(os.path.join(folder, "tokenizer.json"))
        tok.no_padding()
        tok.enable_truncation(max_length=ref.max_length)
        ids = [tok.encode(t).ids for t in texts]
        return [len(i) for i in ids], np.array([ref.embed(i, **kw) for i in ids])

    def test_two_families_side_by_side(self):
        w = self.worker("--model", f"x={self.xlmr}", "--model", f"p={self.mpnet}")
        r = self.run_jobs([self.embed(TEXTS, model="x"), self.embed(TEXTS, model="p"),
                           self.embed(TEXTS[:3], model="p", pooling="max"),
                           self.embed(TEXTS[:3], model="p", dimensions=8),
                           self.embed("x", model="p", pooling="maximum"),
                           {"op": "mlp", "model": "p", "inputs": {"x": tensor(np.ones((1, 4), np.float32))}}])
        for got, (folder, kw) in zip(r[:3], [(self.xlmr, {}), (self.mpnet, {}), (self.mpnet, {"pooling": "max"})]):
            counts, want = self.want(folder, TEXTS[:len(tokens_of(got))], **kw)
            self.assertEqual(list(tokens_of(got)), counts)
            y = self.ok(got)
            self.assertEqual(y.shape, want.shape)
            np.testing.assert_allclose(y, want, atol=2e-5)
        _, full = self.want(self.mpnet, TEXTS[:3])
        short = full[:, :8] / np.linalg.norm(full[:, :8], axis=1, keepdims=True)
        np.testing.assert_allclose(self.ok(r[3]), short, atol=2e-5)
        self.assertEqual((r[4]["status"], r[4]["error"]["code"]), ("error", "bad_request"))
        self.assertIn("mean, cls, max", r[4]["error"]["message"])
        self.assertEqual((r[5]["status"], r[5]["error"]["code"]), ("error", "unknown_model"))
        text = w.output()
        self.assertIn("model x: roberta text encoder", text)
        self.assertIn("model p: mpnet text encoder, 2 layers, hidden 64", text)
        self.assertIn("1 Dense to 24", text)

    def test_bf16(self):
        self.worker("--model", f"p={self.mpnet}", "--precision", "bf16")
        [r] = self.run_jobs([self.embed(TEXTS, model="p")])
        _, f32 = self.want(self.mpnet, TEXTS)
        y = self.ok(r)
        # the four GEMMs of each layer in bf16, the Dense module in f32: near f32, not equal
        err = np.abs(y - f32).max()
        self.assertGreater(err, 0)
        self.assertLess(err, 2e-2)

    def test_refused_at_start(self):
        with open(os.path.join(self.mpnet, "2_Dense", "config.json"), "w") as f:
            f.write('{"in_features": 64, "out_features": 24, "activation_function": "torch.nn.Softsign"}')
        p = subprocess.run([GPUQ, "worker", "--redis", self.redis.url, "--backend", BACKEND, "--model",
                            f"p={self.mpnet}"], capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 2)
        self.assertIn("activation_function torch.nn.Softsign is not served", p.stderr)
        self.assertEqual(len(p.stderr.strip().splitlines()), 1, p.stderr)


if __name__ == "__main__":
    unittest.main()
