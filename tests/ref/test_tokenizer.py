"""The C tokenizer (tests/tok_ids) against Hugging Face `tokenizers`, token
for token, on the corpus in tests/data and on invalid UTF-8, for the real
all-MiniLM-L6-v2 tokenizer.json, for variants of its normalizer flags, and
for the vocab.txt + tokenizer_config.json path."""
import json
import os
import shutil
import subprocess
import tempfile
import unittest

import pyenv
from tokenizers import Tokenizer
from tokenizers.implementations import BertWordPieceTokenizer

INVALID = [b"\xff", b"abc\xffdef", b"\xc3", b"caf\xc3", b"\xe2\x82", b"x\xe2\x82y", b"\xed\xa0\x80 surrogate",
           b"\xf0\x9f\x98", b"over\xf4\x90\x80\x80long", b"\xc0\xaf slash", b"\x80\x80\x80 cont",
           b"mix \xf0\x9f\x98\x80 \xf0\x9f ok", b"\xfe\xfe\xff\xff", b"\xe0\x80\x80 overlong"]


def c_ids(folder, texts, max_length):
    """texts: bytes; returns one id list per text."""
    inp = "".join(t.hex() + "\n" for t in texts)
    out = subprocess.run([pyenv.tool("tok_ids"), folder, str(max_length)], input=inp,
                         capture_output=True, text=True, check=True).stdout
    return [[int(x) for x in line.split()] for line in out.splitlines()]


def hf_ids(tok, texts, max_length):
    tok.no_padding()
    tok.enable_truncation(max_length=max_length)
    return [tok.encode(t.decode("utf-8", "replace")).ids for t in texts]


class TestTokenizer(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.model = pyenv.model_dir()
        cls.texts = [t.encode() for t in pyenv.corpus()] + INVALID
        cls.tmp = tempfile.mkdtemp(prefix="gpuq-tok-")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp)

    def compare(self, folder, tok, max_length):
        got, want = c_ids(folder, self.texts, max_length), hf_ids(tok, self.texts, max_length)
        self.assertEqual(len(got), len(self.texts))
        for text, g, w in zip(self.texts, got, want):
            self.assertEqual(g, w, f"text {text[:60]!r} (max_length {max_length})")

    def test_real_tokenizer(self):
        tok = Tokenizer.from_file(os.path.join(self.model, "tokenizer.json"))
        for max_length in (256, 512, 7, 2):
            self.compare(self.model, tok, max_length)
        # the corpus exercises what it claims to
        ids = hf_ids(tok, self.texts, 512)
        self.assertTrue(any(len(i) == 512 for i in ids), "a text long enough to truncate")
        self.assertTrue(any(103 in i for i in ids), "a literal [MASK]")
        self.assertTrue(any(i == [101, 102] for i in ids), "an empty text")

    def variant(self, name, **flags):
        with open(os.path.join(self.model, "tokenizer.json")) as f:
            spec = json.load(f)
        spec["normalizer"].update(flags)
        folder = os.path.join(self.tmp, name)
        os.makedirs(folder)
        with open(os.path.join(folder, "tokenizer.json"), "w") as f:
            json.dump(spec, f)
        return folder, Tokenizer.from_str(json.dumps(spec))

    def test_normalizer_flags(self):
        for i, flags in enumerate([dict(lowercase=False),
                                   dict(lowercase=True, strip_accents=False),
                                   dict(lowercase=False, strip_accents=True),
                                   dict(clean_text=False, handle_chinese_chars=False)]):
            with self.subTest(flags=flags):
                folder, tok = self.variant(f"v{i}", **flags)
                self.compare(folder, tok, 256)

    def test_vocab_txt(self):
        for i, lower in enumerate((True, False)):
            folder = os.path.join(self.tmp, f"vocab{i}")
            os.makedirs(folder)
            shutil.copy(os.path.join(self.model, "vocab.txt"), folder)
            with open(os.path.join(folder, "tokenizer_config.json"), "w") as f:
                json.dump({"do_lower_case": lower, "model_max_length": 512}, f)
            tok = BertWordPieceTokenizer(os.path.join(folder, "vocab.txt"), lowercase=lower)
            with self.subTest(lowercase=lower):
                self.compare(folder, tok._tokenizer, 256)

    def test_bad_folder(self):
        r = subprocess.run([pyenv.tool("tok_ids"), self.tmp, "8"], input="", capture_output=True, text=True)
        self.assertEqual(r.returncode, 2)
        self.assertIn("no tokenizer.json and no vocab.txt", r.stderr)


if __name__ == "__main__":
    unittest.main()
