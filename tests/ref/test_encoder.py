"""The C BERT encoder (tests/encoder_embed) against the numpy reference in
bert_ref.py: first the reference against the figures the sentence-transformers
documentation publishes for all-MiniLM-L6-v2, then the C side against the
reference on every text of the corpus, batching invariance, random tiny
encoders from scripts/make-model in every loader variant, and the loader's
refusals."""
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import unittest

import numpy as np

import bert_ref
import pyenv
from tokenizers import Tokenizer
from tokenizers.implementations import BertWordPieceTokenizer

# https://sbert.net/docs/sentence_transformer/usage/usage.html (Computing Embeddings):
#   model = SentenceTransformer("all-MiniLM-L6-v2"); model.similarity(embeddings, embeddings)
QUICKSTART = (["The weather is lovely today.", "It's so sunny outside!", "He drove to the stadium."],
              [[1.0000, 0.6660, 0.1046], [0.6660, 1.0000, 0.1411], [0.1046, 0.1411, 1.0000]])
# https://sbert.net/docs/sentence_transformer/usage/semantic_textual_similarity.html
STS = (["The new movie is awesome", "The cat sits outside", "A man is playing guitar"],
       ["The dog plays in the garden", "The new movie is so great", "A woman watches TV"],
       [[0.0543, 0.8939, -0.0502], [0.2838, -0.0029, 0.1310], [0.2277, -0.0136, -0.0327]])


def c_embed(folder, texts, *args):
    """(token counts, embeddings) from the C driver for texts (str or bytes)."""
    inp = "".join((t if isinstance(t, bytes) else t.encode()).hex() + "\n" for t in texts)
    r = subprocess.run([pyenv.tool("encoder_embed"), folder, *map(str, args)], input=inp,
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(r.stderr.strip())
    rows = [line.split() for line in r.stdout.splitlines()]
    return [int(row[0]) for row in rows], np.array([[float(x) for x in row[1:]] for row in rows])


def cosines(a, b):
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def corpus_reference(model, ref, tok, texts):
    """(token counts, embeddings) of the reference over the corpus. It takes
    ~20 s of float64 GEMMs, so it is kept in .cache/ref, keyed by the corpus,
    the reference's code, the weights and the precision."""
    key = hashlib.sha256(ref.precision.encode())
    for path in (pyenv.CORPUS, bert_ref.__file__, os.path.join(model, "model.safetensors")):
        with open(path, "rb") as f:
            key.update(f.read())
    cache = os.path.join(pyenv.ROOT, ".cache", "ref", key.hexdigest()[:16] + ".npz")
    if os.path.exists(cache):
        with np.load(cache) as z:
            return z["counts"], z["y"]
    counts = np.array([len(tok.encode(t).ids) for t in texts])
    y = np.array([ref.embed(tok.encode(t).ids) for t in texts])
    os.makedirs(os.path.dirname(cache), exist_ok=True)
    np.savez(cache + ".tmp.npz", counts=counts, y=y)
    os.replace(cache + ".tmp.npz", cache)
    return counts, y


class TestRealModel(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.model = pyenv.model_dir()
        cls.ref = bert_ref.Bert(cls.model)
        cls.tok = Tokenizer.from_file(os.path.join(cls.model, "tokenizer.json"))
        cls.tok.no_padding()
        cls.tok.enable_truncation(max_length=cls.ref.max_length)

    def ref_embed(self, texts):
        return np.array([self.ref.embed(self.tok.encode(t).ids) for t in texts])

    def test_reference_reproduces_published_figures(self):
        self.assertEqual((self.ref.max_length, self.ref.pooling, self.ref.normalize), (256, "mean", True))
        e = self.ref_embed(QUICKSTART[0])
        np.testing.assert_allclose(e @ e.T, QUICKSTART[1], atol=5e-5 + 1e-6)
        a, b = self.ref_embed(STS[0]), self.ref_embed(STS[1])
        np.testing.assert_allclose(a @ b.T, STS[2], atol=5e-5 + 1e-6)

    def test_corpus_against_reference(self):
        texts = pyenv.corpus()
        counts, y = c_embed(self.model, texts)
        want_counts, want = corpus_reference(self.model, self.ref, self.tok, texts)
        self.assertEqual(counts, list(want_counts))
        cos = cosines(y, want)
        worst = int(cos.argmin())
        self.assertGreaterEqual(cos[worst], 0.9999, f"text {worst}: {texts[worst][:60]!r}")
        # stricter than the contract's cosine, which a tanh GELU would still pass
        np.testing.assert_allclose(y, want, atol=1e-5)
        np.testing.assert_allclose(np.linalg.norm(y, axis=1), 1, atol=1e-5)   # Normalize module

    def test_batching_invariance(self):
        texts = pyenv.corpus()[:24] + [pyenv.corpus()[54]]   # short ones and one truncated to 256
        _, many = c_embed(self.model, texts)
        _, one = c_embed(self.model, texts, "--batch", 1)
        _, some = c_embed(self.model, texts, "--batch", 7)
        self.assertLessEqual(np.abs(many - one).max(), 1e-5)
        self.assertLessEqual(np.abs(many - some).max(), 1e-5)

    def test_max_length_and_pooling_overrides(self):
        texts = ["A sentence long enough to be cut at eight tokens, surely.", "short"]
        counts, y = c_embed(self.model, texts, "--max-length", 8, "--pool", "cls", "--normalize", 0)
        self.tok.enable_truncation(max_length=8)
        try:
            ids = [self.tok.encode(t).ids for t in texts]
        finally:
            self.tok.enable_truncation(max_length=self.ref.max_length)
        self.assertEqual(counts, [len(i) for i in ids])
        want = np.array([self.ref.embed(i, pooling="cls", normalize=False) for i in ids])
        self.assertGreaterEqual(cosines(y, want).min(), 0.9999)
        np.testing.assert_allclose(y, want, atol=1e-4)


class TestTinyModels(unittest.TestCase):
    """Random 2-layer, hidden-64 encoders in every loader variant."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="gpuq-bert-")
        cls.texts = ["The weather is lovely today.", "It's sunny!", "", "qwerty uiop asdf " * 10, "[MASK] x"]

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp)

    def make(self, name, *flags):
        folder = os.path.join(self.tmp, name)
        subprocess.run([os.path.join(pyenv.ROOT, "scripts", "make-model"), "--bert", folder, *flags], check=True)
        return folder

    def test_variants(self):
        for i, flags in enumerate([(), ("--pooling", "cls"), ("--pooling", "mean", "--normalize"),
                                   ("--prefix", "bert.", "--dtype", "f16"), ("--dtype", "bf16", "--pooling", "cls")]):
            with self.subTest(flags=flags):
                folder = self.make(f"m{i}", "--seed", str(i), *flags)
                ref = bert_ref.Bert(folder)
                self.assertEqual(ref.max_length, 64)   # min(64 positions, model_max_length 512)
                tok = BertWordPieceTokenizer(os.path.join(folder, "vocab.txt"), lowercase=True)
                tok.enable_truncation(max_length=ref.max_length)
                ids = [tok.encode(t).ids for t in self.texts]
                counts, y = c_embed(folder, self.texts)
                self.assertEqual(counts, [len(x) for x in ids])
                want = np.array([ref.embed(x) for x in ids])
                self.assertGreaterEqual(cosines(y, want).min(), 0.9999)
                np.testing.assert_allclose(y, want, atol=1e-4, rtol=1e-4)

    def test_precision(self):
        """--precision's rule, on a 2-layer encoder (where sums in another
        order seldom round a GEMM input the other way, as they do more often
        through the six layers of the real model): in bf16 and f16 the C side
        is the reference that rounds the same matrices and GEMM inputs, far
        closer to it than to f32; the token counts do not change."""
        folder = self.make("precision", "--pooling", "mean", "--normalize")
        tok = BertWordPieceTokenizer(os.path.join(folder, "vocab.txt"), lowercase=True)
        tok.enable_truncation(max_length=64)
        texts = pyenv.corpus()
        ids = [tok.encode(t).ids for t in texts]
        f32 = np.array([bert_ref.Bert(folder).embed(x) for x in ids])
        for p in ("bf16", "f16"):
            with self.subTest(precision=p):
                ref = bert_ref.Bert(folder, p)
                want = np.array([ref.embed(x) for x in ids])
                counts, y = c_embed(folder, texts, "--precision", p)
                self.assertEqual(counts, [len(x) for x in ids])
                # per text; the median, as a rare input rounded the other way moves a whole text
                to_rule, to_f32 = (np.median(np.sqrt(((y - r) ** 2).mean(1))) for r in (want, f32))
                print(f"{p}: median rms difference to the {p} reference {to_rule:.3g}, to f32 {to_f32:.3g}")
                self.assertLessEqual(to_rule, to_f32 / 8)

    def refused(self, folder, want):
        with self.assertRaises(RuntimeError) as e:
            c_embed(folder, ["x"])
        self.assertIn(want, str(e.exception))
        self.assertEqual(len(str(e.exception).splitlines()), 1)

    def edit_json(self, path, **changes):
        with open(path) as f:
            d = json.load(f)
        d.update(changes)
        with open(path, "w") as f:
            json.dump(d, f)

    def test_refusals(self):
        folder = self.make("bad", "--pooling", "mean")
        cfg, pool = os.path.join(folder, "config.json"), os.path.join(folder, "1_Pooling", "config.json")
        self.edit_json(cfg, model_type="gpt2")
        self.refused(folder, "config.json: model_type \"gpt2\" is not served (served: bert, distilbert, roberta, "
                             "xlm-roberta, camembert, mpnet, qwen3, qwen2)")
        self.edit_json(cfg, model_type="bert", hidden_act="gelu_new")
        self.refused(folder, "hidden_act \"gelu_new\" is not served (gelu, relu)")
        self.edit_json(cfg, hidden_act="gelu", num_attention_heads=5)
        self.refused(folder, "the hidden size 64 is not a multiple of the 5 heads")
        self.edit_json(cfg, num_attention_heads=4, hidden_size=32)
        self.refused(folder, "model.safetensors: tensor embeddings.word_embeddings.weight: dim 1 is 64, want 32")
        self.edit_json(cfg, hidden_size=64)
        self.edit_json(pool, pooling_mode_max_tokens=True)
        self.refused(folder, "2 pooling modes are on; one is served")
        self.edit_json(pool, pooling_mode_max_tokens=False)
        mods = os.path.join(folder, "modules.json")
        with open(mods) as f:
            saved = f.read()
        with open(mods, "w") as f:
            json.dump(json.loads(saved) + [{"path": "2_Dense", "type": "sentence_transformers.models.Dense"}], f)
        self.refused(folder, "2_Dense/config.json: missing")
        with open(mods, "w") as f:
            json.dump(json.loads(saved) + [{"path": "2_LayerNorm", "type": "sentence_transformers.models.LayerNorm"}], f)
        self.refused(folder, "modules.json: module sentence_transformers.models.LayerNorm at 2_LayerNorm is not "
                             "served here")
        with open(mods, "w") as f:
            f.write(saved)
        c_embed(folder, ["x"])   # whole again
        os.remove(os.path.join(folder, "model.safetensors"))
        self.refused(folder, "model.safetensors")
        os.remove(cfg)
        self.refused(folder, "config.json: missing")


if __name__ == "__main__":
    unittest.main()
