"""A numpy reference of the encoder families gpuq serves, written from the
model folder alone (float64 throughout), to check the C families against:
BERT, DistilBERT, RoBERTa / XLM-RoBERTa / CamemBERT and MPNet, then the
sentence-transformers modules a folder's modules.json lists after its
Transformer (Pooling in every mode, Dense, Normalize), and the heads: the
sequence classifiers of transformers (*ForSequenceClassification) with the
activation sentence-transformers' CrossEncoder puts on their logits, and the
masked-language-model head a SPLADE folder pools into a sparse vector.

    m = encoder_ref.load(folder, precision="f32")   # Bert | DistilBert | Roberta | MPNet
    m.hidden_states(ids, type_ids=None) -> [n, hidden]
    m.embed(ids, pooling=None, normalize=None, prompt_length=0) -> [dims]
    m.logits(ids, type_ids=None) -> [num_labels]
    m.scores(ids, type_ids=None) -> [num_labels] (one float per label, after the activation)
    m.sparse(ids) -> [vocab_size]

Token ids (and a pair's type ids) come from Hugging Face `tokenizers`, one
text (or pair) at a time, unpadded. Nothing is shared with the C side; the
formulas were read from transformers and sentence-transformers and checked
against them by validate_with_transformers.py.

Precision "bf16" or "f16" follows gpuq's --precision rule, as bert_ref.py
does: the weight matrix of every GEMM (each layer's dense matrices, and those
of the Dense module, the pooler, the classifier and the MLM head) and the
input of each of those GEMMs are rounded to nearest even in that format;
embedding lookups, sums, norms, softmax and everything else stay as they are."""
import math
import os

import numpy as np

from bert_ref import _json, _layernorm, read_safetensors, round_to

# ---------------------------------------------------------------------------
# shared pieces
# ---------------------------------------------------------------------------


def erf(x):
    """erf to a few ulps of float64 (checked against math.erf in the
    validation script), vectorised: the Maclaurin series below |x| 2.5, the
    continued fraction of erfc above (erf is 1 in float64 past 6). bert_ref's
    cheaper approximation is off by up to 1.5e-7, which would hide a real
    difference from transformers at that size."""
    x = np.asarray(x, np.float64)
    a = np.abs(x)
    small = np.minimum(a, 2.5)
    term = small.copy()
    total = small.copy()
    for n in range(1, 45):
        term = term * -(small * small) / n
        total = total + term / (2 * n + 1)
    series = 2 / math.sqrt(math.pi) * total
    big = np.clip(a, 2.5, 6.0)
    t = big.copy()
    for k in range(50, 0, -1):
        t = big + (k / 2) / t
    tail = 1 - np.exp(-big * big) / (math.sqrt(math.pi) * t)
    return np.sign(x) * np.where(a < 2.5, series, np.where(a < 6.0, tail, 1.0))


ACTIVATIONS = {
    "gelu": lambda x: 0.5 * x * (1 + erf(x / math.sqrt(2))),
    "gelu_new": lambda x: 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3))),
    "gelu_pytorch_tanh": lambda x: 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3))),
    "relu": lambda x: np.maximum(x, 0),
    "silu": lambda x: x / (1 + np.exp(-x)),
    "swish": lambda x: x / (1 + np.exp(-x)),
    "tanh": np.tanh,
    "identity": lambda x: x,
    "sigmoid": lambda x: 1 / (1 + np.exp(-x)),
}

# torch.nn activation classes by their last dotted name, as modules.json's
# Dense and a CrossEncoder's activation_fn name them
TORCH_ACTIVATIONS = {"Tanh": "tanh", "Identity": "identity", "ReLU": "relu", "GELU": "gelu", "Sigmoid": "sigmoid",
                     "SiLU": "silu"}

POOLING_MODES = ("cls", "max", "mean", "mean_sqrt_len_tokens", "weightedmean", "lasttoken")
# the old boolean keys, in the order sentence-transformers concatenates them
LEGACY_POOLING = (("pooling_mode_cls_token", "cls"), ("pooling_mode_max_tokens", "max"),
                  ("pooling_mode_mean_tokens", "mean"), ("pooling_mode_mean_sqrt_len_tokens", "mean_sqrt_len_tokens"),
                  ("pooling_mode_weightedmean_tokens", "weightedmean"), ("pooling_mode_lasttoken", "lasttoken"))


def torch_activation(path):
    """"torch.nn.modules.activation.Tanh" -> "tanh". Only torch.* paths
    count, as sentence-transformers trusts no other without
    trust_remote_code; None for any other."""
    if not path or not path.startswith("torch."):
        return None
    name = path.rsplit(".", 1)[-1]
    if name not in TORCH_ACTIVATIONS:
        raise ValueError(f"activation {path} is not one the reference knows")
    return TORCH_ACTIVATIONS[name]


def pooling_modes(cfg):
    """The Pooling module's modes, in concatenation order, from its
    config.json: "pooling_mode" (a string or a list) or the old booleans
    (none set means mean)."""
    mode = cfg.get("pooling_mode")
    if mode is None:
        modes = tuple(m for key, m in LEGACY_POOLING if cfg.get(key))
        return modes or ("mean",)
    modes = (mode,) if isinstance(mode, str) else tuple(mode)
    for m in modes:
        if m not in POOLING_MODES:
            raise ValueError(f"pooling mode {m!r} is not one of {POOLING_MODES}")
    return modes


def pool(x, modes, prompt_length=0):
    """sentence-transformers' Pooling of one unpadded sequence x [n, h]:
    each mode in turn, concatenated. prompt_length > 0 (include_prompt
    false) leaves the first tokens out of every mode's mask, as it does (cls
    then takes the first token after the prompt; weightedmean keeps the
    tokens' own positions 1..n as weights)."""
    n = x.shape[0]
    mask = np.ones(n)
    mask[:prompt_length] = 0
    out = []
    for mode in modes:
        if mode == "cls":
            out.append(x[int(np.argmax(mask))])
        elif mode == "max":
            out.append(np.where(mask[:, None] > 0, x, -np.inf).max(0))
        elif mode in ("mean", "mean_sqrt_len_tokens"):
            count = max(mask.sum(), 1e-9)
            out.append((x * mask[:, None]).sum(0) / (count if mode == "mean" else math.sqrt(count)))
        elif mode == "weightedmean":
            w = mask * np.arange(1, n + 1)
            out.append((x * w[:, None]).sum(0) / max(w.sum(), 1e-9))
        elif mode == "lasttoken":
            last = n - 1 - int(np.argmax(mask[::-1])) if mask.any() else n - 1
            out.append(x[last] * mask[last])
        else:
            raise ValueError(f"pooling mode {mode!r}")
    return np.concatenate(out)


def mpnet_bucket(relative_position, num_buckets=32, max_distance=128):
    """transformers' MPNet relative_position_bucket (the T5 scheme,
    bidirectional), with its log in float32 as torch computes it, so that
    the buckets agree at their edges. relative_position = key - query."""
    n = -np.asarray(relative_position, np.int64)
    num_buckets //= 2
    ret = (n < 0).astype(np.int64) * num_buckets
    n = np.abs(n)
    max_exact = num_buckets // 2
    logn = np.log(np.maximum(n, 1).astype(np.float32) / np.float32(max_exact))   # n < max_exact: not used
    large = max_exact + (logn / np.float32(math.log(max_distance / max_exact))
                         * np.float32(num_buckets - max_exact)).astype(np.int64)
    large = np.minimum(large, num_buckets - 1)
    return ret + np.where(n < max_exact, n, large)


def _strip(weights, prefixes):
    """Tensor names with the family's model prefix (and the old LayerNorm
    gamma/beta names) taken off, as transformers accepts both."""
    out = {}
    for k, v in weights.items():
        for p in prefixes:
            if k.startswith(p):
                k = k[len(p):]
                break
        out[k.replace(".gamma", ".weight").replace(".beta", ".bias")] = v
    return out


# ---------------------------------------------------------------------------
# the encoder, with what every family shares
# ---------------------------------------------------------------------------

class Encoder:
    """One model folder. Subclasses give the family's embeddings, layer and
    heads; this class reads the folder, runs the sentence-transformers
    modules and the CrossEncoder rules."""
    PREFIXES = ()
    LINEAR = ()          # each layer's GEMMs, names relative to the layer

    def __init__(self, folder, precision="f32"):
        self.folder, self.precision = folder, precision
        self.config = c = _json(folder, "config.json")
        if c is None:
            raise FileNotFoundError(os.path.join(folder, "config.json"))
        self.model_type = c.get("model_type")
        self.read_config(c)
        self.w = _strip(read_safetensors(os.path.join(folder, "model.safetensors")), self.PREFIXES)
        # every GEMM's weight as the precision's GEMMs see it
        for name in list(self.w):
            if name.endswith(".weight") and self.w[name].ndim == 2 and self.is_linear(name):
                self.w[name] = round_to(self.w[name], precision)
        self.read_modules()
        self.read_head()

    def is_linear(self, name):
        """Whether the matrix name is a GEMM's weight (not an embedding table)."""
        return "embeddings." not in name and not name.startswith("encoder.relative_attention_bias")

    # ---- the modules after the Transformer ----

    def read_modules(self):
        """modules.json in order; without one, sentence-transformers' default
        for a plain transformers folder: mean pooling, no Normalize."""
        self.modules = []
        self.prompt_excluded = False
        mods = _json(self.folder, "modules.json")
        if mods is None:
            self.modules = [("pooling", ("mean",))]
        for m in mods or []:
            kind = m["type"].rsplit(".", 1)[-1]
            path = os.path.join(self.folder, m.get("path", ""))
            if kind == "Transformer":
                continue
            if kind == "Pooling":
                cfg = _json(path, "config.json") or {}
                self.prompt_excluded = cfg.get("include_prompt", True) is False
                self.modules.append(("pooling", pooling_modes(cfg)))
            elif kind == "Dense":
                cfg = _json(path, "config.json")
                act = cfg.get("activation_function", "torch.nn.modules.activation.Tanh")
                act = torch_activation(act) or "tanh"   # an untrusted path falls back to Tanh, as there
                if cfg.get("use_residual"):
                    raise ValueError(f"{path}: Dense use_residual is not in the reference")
                t = read_safetensors(os.path.join(path, "model.safetensors"))
                w = round_to(t["linear.weight"], self.precision)
                if w.shape != (cfg["out_features"], cfg["in_features"]):
                    raise ValueError(f"{path}: linear.weight is {w.shape}")
                b = t.get("linear.bias") if cfg.get("bias", True) else None
                self.modules.append(("dense", (w, b, act)))
            elif kind == "Normalize":
                self.modules.append(("normalize", None))
            else:
                raise ValueError(f"modules.json: module {m['type']} is not in the reference")
        sb = _json(self.folder, "sentence_bert_config.json") or {}
        tc = _json(self.folder, "tokenizer_config.json") or {}
        max_pos = self.max_positions()
        self.max_length = min(sb.get("max_seq_length") or tc.get("model_max_length", 10 ** 30), max_pos)

    def max_positions(self):
        return self.config["max_position_embeddings"]

    @property
    def pooling(self):
        modes = [arg for kind, arg in self.modules if kind == "pooling"]
        return modes[0] if modes else None

    @property
    def normalize(self):
        return any(kind == "normalize" for kind, _ in self.modules)

    def linear(self, x, name):
        """x @ W.T + b for the folder's tensor name (GEMM input rounded)."""
        y = round_to(x, self.precision) @ self.w[name + ".weight"].T
        return y + self.w[name + ".bias"] if name + ".bias" in self.w else y

    def embed(self, ids, pooling=None, normalize=None, prompt_length=0, type_ids=None):
        """The sentence embedding: hidden states through the modules of
        modules.json in order. pooling (a mode or a tuple of modes) replaces
        the Pooling module's modes; normalize True/False adds or drops the
        final L2 normalisation; prompt_length counts the prompt's tokens,
        left out of pooling where the Pooling module says include_prompt false."""
        y = self.hidden_states(ids, type_ids)
        pooled = False
        for kind, arg in self.modules:
            if kind == "pooling":
                modes = arg if pooling is None else ((pooling,) if isinstance(pooling, str) else tuple(pooling))
                y = pool(y, modes, prompt_length if self.prompt_excluded else 0)
                pooled = True
            elif kind == "dense":
                w, b, act = arg
                y = round_to(y, self.precision) @ w.T + (0 if b is None else b)
                y = ACTIVATIONS[act](y)
            elif kind == "normalize" and normalize is not False:
                y = y / max(np.linalg.norm(y), 1e-12)
        if not pooled:
            raise ValueError("modules.json has no Pooling module")
        if normalize and not self.normalize:
            y = y / max(np.linalg.norm(y), 1e-12)
        return y

    # ---- heads ----

    def read_head(self):
        c = self.config
        self.architectures = c.get("architectures") or []
        self.id2label = {int(k): v for k, v in (c.get("id2label") or {}).items()}
        self.num_labels = c.get("num_labels") or len(self.id2label) or 2
        self.problem_type = c.get("problem_type")

    @property
    def activation(self):
        """The activation sentence-transformers' CrossEncoder puts on the
        logits: activation_fn of config_sentence_transformers.json, else
        config.json's sentence_transformers.activation_fn, else its older
        sbert_ce_default_activation_function (each only as a torch.* path),
        else sigmoid for one label and identity for several."""
        for path in ((_json(self.folder, "config_sentence_transformers.json") or {}).get("activation_fn"),
                     (self.config.get("sentence_transformers") or {}).get("activation_fn"),
                     self.config.get("sbert_ce_default_activation_function")):
            act = torch_activation(path) if path else None
            if act:
                return act
        return "sigmoid" if self.num_labels == 1 else "identity"

    def scores(self, ids, type_ids=None, activation=None):
        """CrossEncoder.predict for one pair: the logits through the
        activation (the folder's unless named: one of ACTIVATIONS)."""
        return ACTIVATIONS[activation or self.activation](self.logits(ids, type_ids))

    def logits(self, ids, type_ids=None):
        """The *ForSequenceClassification logits [num_labels]."""
        raise NotImplementedError(f"{type(self).__name__}: no sequence-classification head")

    def sparse(self, ids, type_ids=None):
        """SPLADE: the masked-language-model logits of every token,
        log(1 + ReLU(.)), max-pooled over the tokens: [vocab_size]."""
        return np.log1p(np.maximum(self.mlm_logits(ids, type_ids), 0)).max(0)

    def mlm_logits(self, ids, type_ids=None):
        raise NotImplementedError(f"{type(self).__name__}: no masked-language-model head")

    # ---- the encoder itself ----

    def attention(self, x, q, k, v, bias=None):
        """Softmax attention over one unpadded sequence: q, k, v [n, h]
        split into heads; bias [heads, n, n] added to the scaled scores."""
        n, d = x.shape[0], self.h // self.heads
        q, k, v = (t.reshape(n, self.heads, d).transpose(1, 0, 2) for t in (q, k, v))
        s = q @ k.transpose(0, 2, 1) / math.sqrt(d)
        if bias is not None:
            s = s + bias
        s = np.exp(s - s.max(-1, keepdims=True))
        s /= s.sum(-1, keepdims=True)
        return (s @ v).transpose(1, 0, 2).reshape(n, self.h)

    def hidden_states(self, ids, type_ids=None):
        ids = np.asarray(ids, np.int64)
        type_ids = np.zeros_like(ids) if type_ids is None else np.asarray(type_ids, np.int64)
        x = self.embeddings(ids, type_ids)
        bias = self.position_bias(len(ids))
        for i in range(self.layers):
            x = self.layer(x, i, bias)
        return x

    def position_bias(self, n):
        return None


# ---------------------------------------------------------------------------
# BERT
# ---------------------------------------------------------------------------

class Bert(Encoder):
    """BertModel: absolute positions 0..n-1, token types, post-LayerNorm
    layers; heads BertForSequenceClassification (the pooler's dense and tanh
    on [CLS], then classifier) and BertForMaskedLM (SPLADE)."""
    PREFIXES = ("bert.",)
    LAYER = "encoder.layer.{}."

    def read_config(self, c):
        self.h, self.heads, self.layers = c["hidden_size"], c["num_attention_heads"], c["num_hidden_layers"]
        self.eps = c.get("layer_norm_eps", 1e-12)
        self.act = c.get("hidden_act", "gelu")

    def positions(self, ids):
        return np.arange(len(ids))

    def embeddings(self, ids, type_ids):
        w = self.w
        x = (w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][self.positions(ids)]
             + w["embeddings.token_type_embeddings.weight"][type_ids])
        return _layernorm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], self.eps)

    def layer(self, x, i, bias):
        p, w = self.LAYER.format(i), self.w
        ctx = self.attention(x, *(self.linear(x, p + "attention.self." + s) for s in ("query", "key", "value")), bias)
        x = _layernorm(x + self.linear(ctx, p + "attention.output.dense"), w[p + "attention.output.LayerNorm.weight"],
                       w[p + "attention.output.LayerNorm.bias"], self.eps)
        f = ACTIVATIONS[self.act](self.linear(x, p + "intermediate.dense"))
        return _layernorm(x + self.linear(f, p + "output.dense"), w[p + "output.LayerNorm.weight"],
                          w[p + "output.LayerNorm.bias"], self.eps)

    def logits(self, ids, type_ids=None):
        x = self.hidden_states(ids, type_ids)
        pooled = np.tanh(self.linear(x[0], "pooler.dense"))
        return self.linear(pooled, "classifier")

    def mlm_logits(self, ids, type_ids=None):
        """BertForMaskedLM's cls.predictions: transform (dense, the config's
        activation, LayerNorm), then the decoder: the word embeddings (tied,
        unless the folder has its own decoder matrix) and the bias."""
        w = self.w
        x = self.hidden_states(ids, type_ids)
        t = ACTIVATIONS[self.act](self.linear(x, "cls.predictions.transform.dense"))
        t = _layernorm(t, w["cls.predictions.transform.LayerNorm.weight"], w["cls.predictions.transform.LayerNorm.bias"],
                       self.eps)
        dec = w.get("cls.predictions.decoder.weight")
        if dec is None:
            dec = round_to(w["embeddings.word_embeddings.weight"], self.precision)
        bias = w.get("cls.predictions.bias", w.get("cls.predictions.decoder.bias"))
        return round_to(t, self.precision) @ dec.T + bias


# ---------------------------------------------------------------------------
# RoBERTa, XLM-RoBERTa, CamemBERT
# ---------------------------------------------------------------------------

class Roberta(Bert):
    """BERT's layers under the roberta. prefix; position ids past the padding
    index (padding_idx + 1 + i for a sequence free of pad tokens, as
    transformers counts them: a pad token inside the text takes position
    padding_idx and the count goes on after it), one token type; head
    RobertaForSequenceClassification (classifier.dense and tanh on <s>, then
    classifier.out_proj)."""
    PREFIXES = ("roberta.", "xlm_roberta.", "camembert.")

    def read_config(self, c):
        super().read_config(c)
        self.padding_idx = c.get("pad_token_id", 1)

    def max_positions(self):
        return self.config["max_position_embeddings"] - self.padding_idx - 1

    def positions(self, ids):
        mask = (ids != self.padding_idx).astype(np.int64)
        return np.cumsum(mask) * mask + self.padding_idx

    def logits(self, ids, type_ids=None):
        x = self.hidden_states(ids, type_ids)
        return self.linear(np.tanh(self.linear(x[0], "classifier.dense")), "classifier.out_proj")

    def mlm_logits(self, ids, type_ids=None):
        """RobertaForMaskedLM's lm_head: dense, gelu, layer_norm, decoder
        (tied to the word embeddings unless present) plus bias."""
        w = self.w
        x = self.hidden_states(ids, type_ids)
        t = ACTIVATIONS["gelu"](self.linear(x, "lm_head.dense"))
        t = _layernorm(t, w["lm_head.layer_norm.weight"], w["lm_head.layer_norm.bias"], self.eps)
        dec = w.get("lm_head.decoder.weight")
        if dec is None:
            dec = round_to(w["embeddings.word_embeddings.weight"], self.precision)
        return round_to(t, self.precision) @ dec.T + w.get("lm_head.bias", w.get("lm_head.decoder.bias"))


# ---------------------------------------------------------------------------
# DistilBERT
# ---------------------------------------------------------------------------

def sinusoidal_positions(n_pos, dim):
    """DistilBERT's create_sinusoidal_embeddings (sinusoidal_pos_embds true):
    sin in the even columns, cos in the odd."""
    pos = np.array([[p / np.power(10000, 2 * (j // 2) / dim) for j in range(dim)] for p in range(n_pos)])
    out = np.zeros((n_pos, dim))
    out[:, 0::2] = np.sin(pos[:, 0::2])
    out[:, 1::2] = np.cos(pos[:, 1::2])
    return out


class DistilBert(Bert):
    """DistilBertModel: word and position embeddings (no token types; the
    position table is read from the folder, sinusoidal or learned, and built
    when a sinusoidal folder leaves it out), LayerNorm eps 1e-12, layers
    attention.{q,k,v,out}_lin, sa_layer_norm, ffn.lin1/lin2 with the config's
    activation, output_layer_norm; head DistilBertForSequenceClassification
    (pre_classifier and ReLU on [CLS], then classifier)."""
    PREFIXES = ("distilbert.",)
    LAYER = "transformer.layer.{}."

    def read_config(self, c):
        self.h, self.heads, self.layers = c["dim"], c["n_heads"], c["n_layers"]
        self.eps = 1e-12
        self.act = c.get("activation", "gelu")

    def embeddings(self, ids, type_ids):
        w = self.w
        table = w.get("embeddings.position_embeddings.weight")
        if table is None:
            if not self.config.get("sinusoidal_pos_embds"):
                raise KeyError("embeddings.position_embeddings.weight")
            table = sinusoidal_positions(self.config["max_position_embeddings"], self.h)
        x = w["embeddings.word_embeddings.weight"][ids] + table[np.arange(len(ids))]
        return _layernorm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], self.eps)

    def layer(self, x, i, bias):
        p, w = self.LAYER.format(i), self.w
        ctx = self.attention(x, *(self.linear(x, p + f"attention.{s}_lin") for s in "qkv"))
        x = _layernorm(x + self.linear(ctx, p + "attention.out_lin"), w[p + "sa_layer_norm.weight"],
                       w[p + "sa_layer_norm.bias"], self.eps)
        f = ACTIVATIONS[self.act](self.linear(x, p + "ffn.lin1"))
        return _layernorm(x + self.linear(f, p + "ffn.lin2"), w[p + "output_layer_norm.weight"],
                          w[p + "output_layer_norm.bias"], self.eps)

    def logits(self, ids, type_ids=None):
        x = self.hidden_states(ids)
        return self.linear(np.maximum(self.linear(x[0], "pre_classifier"), 0), "classifier")

    def mlm_logits(self, ids, type_ids=None):
        """DistilBertForMaskedLM: vocab_transform, activation, vocab_layer_norm,
        vocab_projector (tied to the word embeddings unless present)."""
        w = self.w
        x = self.hidden_states(ids)
        t = ACTIVATIONS[self.act](self.linear(x, "vocab_transform"))
        t = _layernorm(t, w["vocab_layer_norm.weight"], w["vocab_layer_norm.bias"], self.eps)
        dec = w.get("vocab_projector.weight")
        if dec is None:
            dec = round_to(w["embeddings.word_embeddings.weight"], self.precision)
        return round_to(t, self.precision) @ dec.T + w["vocab_projector.bias"]


# ---------------------------------------------------------------------------
# MPNet
# ---------------------------------------------------------------------------

class MPNet(Roberta):
    """MPNetModel: positions as RoBERTa's (padding index 1, which MPNet
    fixes), no token types, and a relative position bias added to every
    layer's attention scores: encoder.relative_attention_bias [32 buckets,
    heads], shared by all layers, bucketed by mpnet_bucket (32 buckets, max
    distance 128; transformers passes 32 whatever the config's
    relative_attention_num_buckets). Layers attention.attn.{q,k,v,o},
    attention.LayerNorm, intermediate.dense, output.dense, output.LayerNorm.
    Head MPNetForSequenceClassification: as RoBERTa's."""
    PREFIXES = ("mpnet.",)

    def read_config(self, c):
        Bert.read_config(self, c)
        self.padding_idx = 1

    def embeddings(self, ids, type_ids):
        w = self.w
        x = w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][self.positions(ids)]
        return _layernorm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], self.eps)

    def position_bias(self, n):
        pos = np.arange(n)
        bucket = mpnet_bucket(pos[None, :] - pos[:, None])          # [query, key]
        return self.w["encoder.relative_attention_bias.weight"][bucket].transpose(2, 0, 1)

    def layer(self, x, i, bias):
        p, w = self.LAYER.format(i), self.w
        ctx = self.attention(x, *(self.linear(x, p + "attention.attn." + s) for s in "qkv"), bias)
        x = _layernorm(x + self.linear(ctx, p + "attention.attn.o"), w[p + "attention.LayerNorm.weight"],
                       w[p + "attention.LayerNorm.bias"], self.eps)
        f = ACTIVATIONS[self.act](self.linear(x, p + "intermediate.dense"))
        return _layernorm(x + self.linear(f, p + "output.dense"), w[p + "output.LayerNorm.weight"],
                          w[p + "output.LayerNorm.bias"], self.eps)

    def mlm_logits(self, ids, type_ids=None):
        raise NotImplementedError("MPNet: no masked-language-model head in the reference")


FAMILIES = {"bert": Bert, "distilbert": DistilBert, "roberta": Roberta, "xlm-roberta": Roberta,
            "camembert": Roberta, "mpnet": MPNet}


def load(folder, precision="f32"):
    """The family of folder's config.json model_type, loaded."""
    c = _json(folder, "config.json")
    if c is None:
        raise FileNotFoundError(os.path.join(folder, "config.json"))
    kind = c.get("model_type")
    if kind in ("qwen3", "qwen2"):   # the decoder embedders: decoder_ref.py
        import decoder_ref
        return decoder_ref.load(folder, precision)
    if kind not in FAMILIES:
        raise ValueError(f"config.json: model_type {kind!r} is not one of {sorted(FAMILIES)}")
    return FAMILIES[kind](folder, precision)
