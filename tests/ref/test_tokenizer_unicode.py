"""Every code point through every tokenizer of test_tokenizers.py, against
Hugging Face `tokenizers`: the character classes, normalization forms,
compiled character map, regexes and byte-level map of the C tokenizer must
agree with the reference's for each character, alone between spaces and run
together. Characters first assigned in Unicode 15.0 or later are left out:
PCRE2 10.42 and utf8proc 2.8 (Debian's) know Unicode 14 and 15, the
reference's regex engines and Rust's char methods know 16, so those few
may split differently (see text/tokenizer.h)."""
import itertools
import os
import shutil
import tempfile
import unittest

import pyenv
import tok_models
from test_tokenizers import encode_c, encode_hf
from tokenizers import Regex, Tokenizer, pre_tokenizers

AGE = "/usr/share/unicode/DerivedAge.txt"   # Debian's unicode-data


def late_code_points():
    """Code points assigned in Unicode 15.0 (by Debian's DerivedAge.txt) or
    later (those the reference's regex engine does not call unassigned)."""
    late, known = set(), set()
    with open(AGE) as f:
        for line in f:
            line = line.split("#")[0].strip()
            if line:
                rng, age = (x.strip() for x in line.split(";"))
                a, _, b = rng.partition("..")
                cps = range(int(a, 16), int(b or a, 16) + 1)
                known.update(cps)
                if tuple(int(x) for x in age.split(".")) >= (15, 0):
                    late.update(cps)
    probe = pre_tokenizers.Split(Regex(r"\p{Cn}+"), behavior="removed")
    unknown = [c for c in range(0x80, 0x110000) if c not in known]
    for i in range(0, len(unknown), 4096):
        text = "".join(chr(c) for c in unknown[i:i + 4096])
        late.update(ord(ch) for piece, _ in probe.pre_tokenize_str(text) for ch in piece)
    return late


class TestEveryCodePoint(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="gpuq-tok-cp-")
        cls.core = dict(tok_models.build_all(cls.tmp), bert=pyenv.model_dir(),
                        llama2_real=tok_models.real_llama2(cls.tmp))
        cls.variants = tok_models.build_variants(cls.tmp)
        late = late_code_points()
        cls.cps = [c for c in range(0x80, 0x110000) if not 0xD800 <= c < 0xE000 and c not in late]

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp)

    def sweep(self, name, folder, cps, sep):
        lines = [sep.join(chr(c) for c in cps[i:i + 128]).encode() for i in range(0, len(cps), 128)]
        tok = Tokenizer.from_file(os.path.join(folder, "tokenizer.json"))
        got, want = encode_c(folder, lines, 100000), encode_hf(tok, lines, 100000)
        bad = [i for i, (g, w) in enumerate(zip(got, want)) if g != w]
        self.assertEqual(bad, [], f"{name}: lines from U+{cps[bad[0] * 128]:04X} differ" if bad else "")

    def test_core(self):
        for name, folder in self.core.items():
            for sep, step in ((" ", 1), ("", 3)):
                with self.subTest(tokenizer=name, sep=sep):
                    self.sweep(name, folder, self.cps[::step], sep)

    def test_ascii(self):
        """Each ASCII character inside and between words, and every run of
        three from whitespace, controls, a letter and punctuation."""
        lines = [("a" + chr(c) + "a").encode() for c in range(128)]
        lines += [(" " + chr(c) + " x" + chr(c) * 2 + "\n" + chr(c)).encode() for c in range(128)]
        lines += ["".join(p).encode() for p in itertools.product(" \t\n\r\x0b\x0c\x1c\x1fa.'", repeat=3)]
        for name, folder in dict(self.core, **self.variants).items():
            with self.subTest(tokenizer=name):
                tok = Tokenizer.from_file(os.path.join(folder, "tokenizer.json"))
                got, want = encode_c(folder, lines, 512), encode_hf(tok, lines, 512)
                for line, g, w in zip(lines, got, want):
                    self.assertEqual(g, w, f"{name}: {line!r}")

    def test_scripts(self):
        """UnicodeScripts cuts between each pair of neighbouring code points as
        the reference does (its script table is Unicode 9.0's)."""
        for sep in ("", " "):
            with self.subTest(sep=sep):
                self.sweep("wordpiece_scripts_only", self.variants["wordpiece_scripts_only"], self.cps, sep)

    def test_variants(self):
        for name, folder in self.variants.items():
            with self.subTest(tokenizer=name):
                self.sweep(name, folder, self.cps[::7], " ")


if __name__ == "__main__":
    unittest.main()
