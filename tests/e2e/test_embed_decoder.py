"""Decoder embedders through a worker: a Qwen3 folder (grouped-query causal
attention, q/k norm, rotary positions, byte-level BPE appending
<|endoftext|>, last-token pooling, Normalize, Qwen3-Embedding's prompts)
and a Qwen2 folder (q/k/v biases), served beside an MPNet encoder by one
worker: each job's rows equal to the numpy reference (tests/ref/decoder_ref.py),
with the folder's query prompt by prompt_name, pre-tokenized ids, one job
of many texts against many jobs of one, bad jobs beside good ones, bf16,
and the start log naming each model."""
import argparse
import os
import sys
import unittest

import numpy as np

from harness import BACKEND, tensor

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "ref"))
import pyenv  # noqa: E402,F401  (puts the project's PyPI folder on the path)
try:
    import encoder_ref  # noqa: E402
    import family_models  # noqa: E402
    from tokenizers import Tokenizer  # noqa: E402
except ImportError as e:
    print(f"SKIPPED: {e} (scripts/setup installs tokenizers)")
    sys.exit(77)

from test_embed import EmbedTest, tokens_of  # noqa: E402

TEXTS = ["The weather is lovely today.", "Der Himmel ist heute blau, né?", "Съешь же ещё этих мягких булок",
         "東京は晴れです。", "", "word " * 80]
QUERY = family_models.DECODER_PROMPTS["query"]


def folder_of(path, family, pooling="lasttoken", dense=0, normalize=True, seed=3, save=None):
    a = argparse.Namespace(pooling=pooling, include_prompt=1, dense=dense or None, dense_act="tanh", dense_bias=1,
                           normalize=normalize, head=None, score_activation=None, positions=None, hidden_act="gelu",
                           prefix=None, dtype="f32")
    family_models.write(family, path, a, np.random.default_rng(seed), save=save)
    return path


class Decoders(EmbedTest):
    def setUp(self):
        super().setUp()
        self.qwen3 = folder_of(self.path("qwen3"), "qwen3")
        self.qwen2 = folder_of(self.path("qwen2"), "qwen2", seed=4)
        self.mpnet = folder_of(self.path("mpnet"), "mpnet", "mean", 24, True)

    def want(self, folder, texts, precision="f32", prompt=""):
        ref = encoder_ref.load(folder, precision)
        tok = Tokenizer.from_file(os.path.join(folder, "tokenizer.json"))
        tok.no_padding()
        tok.enable_truncation(max_length=ref.max_length)
        ids = [tok.encode(prompt + t).ids for t in texts]
        return [len(i) for i in ids], np.array([ref.embed(i) for i in ids]), ids

    def check(self, r, folder, texts, prompt=""):
        counts, want, _ = self.want(folder, texts, prompt=prompt)
        self.assertEqual(list(tokens_of(r)), counts)
        y = self.ok(r)
        self.assertEqual(y.shape, want.shape)
        np.testing.assert_allclose(y, want, atol=2e-5)
        return y

    def test_decoders_beside_an_encoder(self):
        w = self.worker("--model", f"q={self.qwen3}", "--model", f"q2={self.qwen2}", "--model", f"p={self.mpnet}")
        _, _, ids = self.want(self.qwen3, TEXTS[:3])
        width = max(len(i) for i in ids)
        padded = np.zeros((3, width), np.int64)
        mask = np.zeros((3, width), np.int64)
        for r, i in enumerate(ids):
            padded[r, :len(i)], mask[r, :len(i)] = i, 1
        r = self.run_jobs([self.embed(TEXTS, model="q"), self.embed(TEXTS, model="q2"), self.embed(TEXTS, model="p"),
                           self.embed(TEXTS[:4], model="q", prompt_name="query"),
                           self.embed(TEXTS[:2], model="q", prompt_name="document"),
                           self.embed(TEXTS[:2], model="q", prompt_name="passage"),
                           {"op": "embed", "model": "q", "inputs": {"input_ids": tensor(padded),
                                                                    "attention_mask": tensor(mask)}},
                           {"op": "rerank", "model": "q", "inputs": {"query": "a", "documents": ["b"]}},
                           self.embed(TEXTS[:3], model="q", pooling="mean", normalize=False)])
        y = self.check(r[0], self.qwen3, TEXTS)
        np.testing.assert_allclose(np.linalg.norm(y, axis=1), 1, atol=1e-5)
        self.check(r[1], self.qwen2, TEXTS)
        self.check(r[2], self.mpnet, TEXTS)
        self.check(r[3], self.qwen3, TEXTS[:4], prompt=QUERY)
        np.testing.assert_allclose(self.ok(r[4]), y[:2], atol=1e-6)     # the document prompt is empty
        self.assertEqual((r[5]["status"], r[5]["error"]["code"]), ("error", "bad_request"))
        self.assertIn("no prompt named 'passage'", r[5]["error"]["message"])
        np.testing.assert_allclose(self.ok(r[6]), y[:3], atol=1e-6)     # the same ids, pre-tokenized
        self.assertEqual(r[7]["status"], "error")
        self.assertIn("sequence classifier", r[7]["error"]["message"])
        ref = encoder_ref.load(self.qwen3)
        mean = np.array([ref.embed(i, pooling="mean", normalize=False) for i in ids])
        np.testing.assert_allclose(self.ok(r[8]), mean, atol=2e-5)
        text = w.output()
        self.assertIn("model q: qwen3 decoder embedder, 2 layers, hidden 64, 4 heads over 2 key/value heads of 16, "
                      "rope_theta 1e+06, q/k norm", text)
        self.assertIn("model q2: qwen2 decoder embedder", text)
        self.assertIn("lasttoken pooling, normalized", text)
        if BACKEND != "cpu":    # on the device, not handed to the CPU backend
            self.assertNotIn("--model q: not on the", text)
            self.assertNotIn("--model q2: not on the", text)

    def test_one_job_or_many(self):
        """A job of N texts and N jobs of one give the same rows, batched
        with other models' texts."""
        self.worker("--model", f"q={self.qwen3}", "--model", f"p={self.mpnet}")
        jobs = [self.embed(TEXTS, model="q", prompt_name="query")]
        jobs += [self.embed(t, model="q", prompt_name="query") for t in TEXTS]
        jobs += [self.embed(TEXTS, model="p")]
        r = self.run_jobs(jobs)
        together = self.check(r[0], self.qwen3, TEXTS, prompt=QUERY)
        for i in range(len(TEXTS)):
            np.testing.assert_allclose(self.ok(r[1 + i]).reshape(-1), together[i], atol=1e-6)
        self.check(r[-1], self.mpnet, TEXTS)

    def test_bf16(self):
        self.worker("--model", f"q={self.qwen3}", "--precision", "bf16")
        [r] = self.run_jobs([self.embed(TEXTS, model="q")])
        _, f32, _ = self.want(self.qwen3, TEXTS)
        y = self.ok(r)
        # the four GEMMs of each layer in bf16: near f32, not equal
        err = np.abs(y - f32).max()
        self.assertGreater(err, 0)
        self.assertLess(err, 3e-2)

    def test_overflow_is_an_error(self):
        """An activation past f16's range (Qwen's SwiGLU is known for
        them) would leave NaN rows: with --precision f16 the decoder's job
        gets an error that says so and the encoder's job beside it its
        rows; in f32 the same decoder answers."""
        loud = family_models.scaled(1000, "gate_proj.weight", "up_proj.weight")
        folder = folder_of(self.path("loud"), "qwen3", save=loud)
        w = self.worker("--model", f"q={folder}", "--model", f"p={self.mpnet}", "--precision", "f16")
        r = self.run_jobs([self.embed(TEXTS[:2], model="q"), self.embed(TEXTS[:2], model="p")])
        self.assertEqual(r[0]["status"], "error")
        self.assertEqual(r[0]["error"]["code"], "internal")
        self.assertIn("embed: the model's output is not finite", r[0]["error"]["message"])
        self.assertIn("f16 ends at 65504", r[0]["error"]["message"])
        self.assertTrue(np.isfinite(self.ok(r[1])).all())
        self.assertEqual(w.stop(), 0)
        self.worker("--model", f"q={folder}")
        [r] = self.run_jobs([self.embed(TEXTS[:2], model="q")])
        self.assertTrue(np.isfinite(self.ok(r)).all())


if __name__ == "__main__":
    unittest.main()
