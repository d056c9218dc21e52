"""A numpy reference of a BERT sentence encoder, written from the model
folder alone (float64 throughout), to check the C encoder against.

In reduced precision (precision "bf16" or "f16", gpuq's --precision) it
follows gpuq's rule: the four dense weight matrices of each layer, and the
input of each of those GEMMs, are rounded to nearest even in that format;
sums and everything else stay as they are.

It reads config.json, model.safetensors, modules.json, the Pooling module's
config.json and sentence_bert_config.json the way sentence-transformers does,
and takes token ids from Hugging Face `tokenizers`, so it shares no code with
the C side."""
import json
import math
import os
import struct

import numpy as np

ST_DTYPES = {"F32": "<f4", "F16": "<f2", "F64": "<f8", "I64": "<i8", "I32": "<i4"}


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    base = 8 + n
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        lo, hi = t["data_offsets"]
        raw = data[base + lo:base + hi]
        if t["dtype"] == "BF16":
            a = (np.frombuffer(raw, "<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            a = np.frombuffer(raw, ST_DTYPES[t["dtype"]])
        out[name] = a.reshape(t["shape"]).astype(np.float64)
    return out


def _json(folder, name):
    path = os.path.join(folder, name)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def _erf(x):
    """Abramowitz and Stegun 7.1.26 (absolute error below 1.5e-7): math.erf
    element by element would take seconds per long text."""
    t = 1 / (1 + 0.3275911 * np.abs(x))
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return np.sign(x) * (1 - poly * np.exp(-x * x))


def round_to(a, precision):
    """a as a GEMM in precision sees it: float32 rounded to nearest even
    bf16 or f16 (and back to float64); a itself for f32."""
    if precision == "f32":
        return a
    a = np.asarray(a, np.float32)
    if precision == "f16":
        with np.errstate(over="ignore"):
            return a.astype(np.float16).astype(np.float64)
    u = a.view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000
    return u.astype(np.uint32).view(np.float32).astype(np.float64)


DENSE = ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
         "intermediate.dense", "output.dense")


def _layernorm(x, g, b, eps):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * g + b


class Bert:
    def __init__(self, folder, precision="f32"):
        c = _json(folder, "config.json")
        self.h, self.heads, self.layers = c["hidden_size"], c["num_attention_heads"], c["num_hidden_layers"]
        self.eps = c.get("layer_norm_eps", 1e-12)
        w = read_safetensors(os.path.join(folder, "model.safetensors"))
        w = {k[5:] if k.startswith("bert.") else k: v for k, v in w.items()}
        self.w = {k.replace(".gamma", ".weight").replace(".beta", ".bias"): v for k, v in w.items()}
        self.precision = precision
        for i in range(self.layers):
            for name in DENSE:
                key = f"encoder.layer.{i}.{name}.weight"
                self.w[key] = round_to(self.w[key], precision)
        # sentence-transformers' defaults
        self.pooling, self.normalize = "mean", False
        mods = _json(folder, "modules.json")
        if mods is not None:
            types = {m["type"].rsplit(".", 1)[-1]: m["path"] for m in mods}
            pool = _json(os.path.join(folder, types["Pooling"]), "config.json")
            self.pooling = "cls" if pool.get("pooling_mode_cls_token") else "mean"
            self.normalize = "Normalize" in types
        sb = _json(folder, "sentence_bert_config.json") or {}
        tc = _json(folder, "tokenizer_config.json") or {}
        max_pos = c["max_position_embeddings"]
        self.max_length = sb.get("max_seq_length") or min(max_pos, tc.get("model_max_length", 10 ** 30))
        self.max_length = min(self.max_length, max_pos)

    def hidden_states(self, ids):
        w, n = self.w, len(ids)
        x = (w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:n]
             + w["embeddings.token_type_embeddings.weight"][0])
        x = _layernorm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], self.eps)
        d = self.h // self.heads
        for i in range(self.layers):
            p = f"encoder.layer.{i}."
            # every dense GEMM takes its input as the precision's GEMMs see it
            lin = lambda v, name: round_to(v, self.precision) @ w[p + name + ".weight"].T + w[p + name + ".bias"]
            q, k, v = (lin(x, f"attention.self.{s}").reshape(n, self.heads, d).transpose(1, 0, 2)
                       for s in ("query", "key", "value"))
            s = q @ k.transpose(0, 2, 1) / math.sqrt(d)
            s = np.exp(s - s.max(-1, keepdims=True))
            s /= s.sum(-1, keepdims=True)
            ctx = (s @ v).transpose(1, 0, 2).reshape(n, self.h)
            x = _layernorm(x + lin(ctx, "attention.output.dense"), w[p + "attention.output.LayerNorm.weight"],
                           w[p + "attention.output.LayerNorm.bias"], self.eps)
            f = lin(x, "intermediate.dense")
            f = 0.5 * f * (1 + _erf(f / math.sqrt(2)))
            x = _layernorm(x + lin(f, "output.dense"), w[p + "output.LayerNorm.weight"],
                           w[p + "output.LayerNorm.bias"], self.eps)
        return x

    def embed(self, ids, pooling=None, normalize=None):
        x = self.hidden_states(np.asarray(ids))
        y = x[0] if (pooling or self.pooling) == "cls" else x.mean(0)
        if self.normalize if normalize is None else normalize:
            y = y / max(np.linalg.norm(y), 1e-12)
        return y
