"""Every encoder and decoder family the worker serves, on random tiny folders of the
family's exact shape (tests/ref/family_models.py, the folders transformers
and sentence-transformers load as they are), against the numpy reference
encoder_ref.py (checked against transformers by validate_with_transformers.py):
the C encoder (tests/encoder_embed) gives the reference's embedding for every
text of the corpus (cosine >= 0.9999 in f32), the same token counts as
`tokenizers`, and the same embedding whether a text runs alone or in a batch.
Each family meets the sentence-transformers modules its folders use: every
Pooling mode, a Dense module, Normalize. The decoder embedders (qwen3,
qwen2: grouped-query causal attention, rotary positions, byte-level BPE
appending <|endoftext|>) meet last-token pooling as Qwen3-Embedding has it,
and mean pooling with a Dense module."""
import argparse
import os
import shutil
import tempfile
import unittest

import numpy as np

import encoder_ref
import family_models
import pyenv
from test_encoder import c_embed, cosines
from tokenizers import Tokenizer

# (family, pooling, dense width, normalize)
CASES = [
    ("bert", "mean", 0, True),
    ("distilbert", "cls", 0, False),
    ("distilbert", "mean", 48, True),
    ("roberta", "mean", 0, True),
    ("roberta", "weightedmean", 0, False),
    ("xlm-roberta", "mean", 0, True),
    ("xlm-roberta", "max", 32, False),
    ("camembert", "cls", 0, True),
    ("mpnet", "mean", 0, True),
    ("mpnet", "mean_sqrt_len_tokens", 40, True),
    ("mpnet", "lasttoken", 0, False),
    ("qwen3", "lasttoken", 0, True),
    ("qwen3", "mean", 40, False),
    ("qwen2", "lasttoken", 0, True),
]


def options(pooling, dense, normalize):
    return argparse.Namespace(pooling=pooling, include_prompt=1, dense=dense or None, dense_act="tanh", dense_bias=1,
                              normalize=normalize, head=None, score_activation=None, positions=None,
                              hidden_act="gelu", prefix=None, dtype="f32")


class TestFamilies(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="gpuq-families-")
        corpus = pyenv.corpus()
        # every script of the corpus, a long text past max_length, an empty one
        cls.texts = corpus[:60] + [" ".join(corpus[:40]), ""]

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def folder(self, family, pooling, dense, normalize, seed=1):
        path = os.path.join(self.tmp, f"{family}-{pooling}-{dense}-{int(normalize)}")
        if not os.path.exists(path):
            family_models.write(family, path, options(pooling, dense, normalize), np.random.default_rng(seed))
        return path

    def test_every_family_matches_the_reference(self):
        for family, pooling, dense, normalize in CASES:
            with self.subTest(family=family, pooling=pooling, dense=dense, normalize=normalize):
                folder = self.folder(family, pooling, dense, normalize)
                ref = encoder_ref.load(folder)
                tok = Tokenizer.from_file(os.path.join(folder, "tokenizer.json"))
                tok.no_padding()
                tok.enable_truncation(max_length=ref.max_length)
                ids = [tok.encode(t).ids for t in self.texts]
                want = np.array([ref.embed(i) for i in ids])
                counts, got = c_embed(folder, self.texts)
                self.assertEqual(counts, [len(i) for i in ids])
                self.assertEqual(got.shape, want.shape)
                worst = cosines(got, want).min()
                print(f"{family} {pooling} dense {dense} normalize {normalize}: worst cosine {worst:.7f}")
                self.assertGreaterEqual(worst, 0.9999)
                if normalize:
                    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1, atol=1e-5)
                # batching invariance: one text at a time gives the same rows
                _, alone = c_embed(folder, self.texts[:12], "--batch", 1)
                np.testing.assert_allclose(alone, got[:12], atol=2e-6)

    def test_decoder_is_causal_and_pools_the_last_token(self):
        """Last-token pooling takes each sequence's own last token
        (<|endoftext|>) in a padding-free batch of unequal lengths; and the
        reference is causal: a prefix's hidden states are those of the same
        tokens in a longer sequence."""
        for family in ("qwen3", "qwen2"):
            with self.subTest(family=family):
                folder = self.folder(family, "lasttoken", 0, True)
                ref = encoder_ref.load(folder)
                tok = Tokenizer.from_file(os.path.join(folder, "tokenizer.json"))
                texts = ["short", "a much longer text than the first one, with more tokens", "mid length text"]
                ids = [tok.encode(t).ids for t in texts]
                self.assertTrue(all(i[-1] == tok.token_to_id("<|endoftext|>") for i in ids))
                counts, got = c_embed(folder, texts)
                self.assertEqual(counts, [len(i) for i in ids])
                want = np.array([ref.embed(i) for i in ids])
                self.assertGreaterEqual(cosines(got, want).min(), 0.9999)
                h = ref.hidden_states(ids[1])
                np.testing.assert_allclose(ref.hidden_states(ids[1][:4]), h[:4], atol=1e-12)

    def test_decoder_long_sequences(self):
        """Sequences past one block of queries (128): the causal attention's
        blocks, each with the keys up to its last query, against the
        reference, alone and batched with short ones."""
        folder = os.path.join(self.tmp, "qwen3-long")
        a = options("lasttoken", 0, True)
        a.positions = 400
        family_models.write("qwen3", folder, a, np.random.default_rng(2))
        ref = encoder_ref.load(folder)
        tok = Tokenizer.from_file(os.path.join(folder, "tokenizer.json"))
        tok.no_padding()
        tok.enable_truncation(max_length=ref.max_length)
        corpus = pyenv.corpus()
        texts = [" ".join(corpus[:40]), " ".join(corpus[10:25]), "short", " ".join(corpus[30:38])]
        ids = [tok.encode(t).ids for t in texts]
        self.assertGreater(len(ids[0]), 256)
        self.assertGreater(len(ids[1]), 128)
        counts, got = c_embed(folder, texts)
        self.assertEqual(counts, [len(i) for i in ids])
        want = np.array([ref.embed(i) for i in ids])
        worst = cosines(got, want).min()
        print(f"qwen3 long {[len(i) for i in ids]} tokens: worst cosine {worst:.7f}")
        self.assertGreaterEqual(worst, 0.9999)
        _, alone = c_embed(folder, texts, "--batch", 1)
        np.testing.assert_allclose(alone, got, atol=2e-6)

    def test_padding_id_in_a_text(self):
        """RoBERTa's and MPNet's positions skip a padding id written in the
        text itself (it keeps the padding row): the reference, as
        transformers, agrees token for token."""
        for family in ("roberta", "mpnet"):
            with self.subTest(family=family):
                folder = self.folder(family, "mean", 0, True)
                ref = encoder_ref.load(folder)
                tok = Tokenizer.from_file(os.path.join(folder, "tokenizer.json"))
                pad = tok.id_to_token(ref.config["pad_token_id"])
                text = f"a few words {pad} and more after it"
                ids = tok.encode(text).ids
                self.assertIn(ref.config["pad_token_id"], ids)
                counts, got = c_embed(folder, [text])
                self.assertEqual(counts, [len(ids)])
                self.assertGreaterEqual(cosines(got, np.array([ref.embed(ids)]))[0], 0.9999)


if __name__ == "__main__":
    unittest.main()
