"""A numpy reference of the decoder embedders gpuq serves (Qwen3, Qwen2: as
Qwen3-Embedding and gte-Qwen2 folders hold them), written from the model
folder alone, float64 throughout, then the sentence-transformers modules
after the Transformer as encoder_ref.py runs them (last-token pooling,
Normalize, prompts).

    m = decoder_ref.load(folder, precision="f32")   # or encoder_ref.load(folder)
    m.hidden_states(ids) -> [n, hidden]   (after the final RMSNorm)
    m.embed(ids, pooling=None, normalize=None) -> [dims]

A layer, as transformers' Qwen3DecoderLayer / Qwen2DecoderLayer computes
it for one unpadded sequence:
    a = RMSNorm(x) (input_layernorm)
    q, k, v = a Wq^T (+ bq), a Wk^T (+ bk), a Wv^T (+ bv)  (biases: Qwen2)
    Qwen3: q, k = RMSNorm per head (q_norm, k_norm over head_dim)
    q, k = rotary(q), rotary(k): rotate-half, angle p * theta^(-2i / head_dim),
        the angles and their cosines and sines in float32 as transformers
        computes them (its rotary embedding forces float32; the rest is float64)
    query head j reads key/value head j // (heads / kv_heads)
    attention causal: position p sees keys 0..p, scores scaled by head_dim^-0.5
    x = x + o_proj(ctx)
    x = x + down(SiLU(gate(RMSNorm(x))) * up(RMSNorm(x)))   (post_attention_layernorm)
then the final RMSNorm (norm). RMSNorm(x) = g * x / sqrt(mean(x^2) + eps).

Precision "bf16" / "f16" rounds each GEMM's weight matrix and input, as
encoder_ref.py does; checked against transformers by
validate_with_transformers.py."""
import math

import numpy as np

from bert_ref import _json, round_to
from encoder_ref import Encoder


def rmsnorm(x, g, eps):
    return g * (x / np.sqrt((x * x).mean(-1, keepdims=True) + eps))


def silu(x):
    return x / (1 + np.exp(-x))


class Qwen(Encoder):
    """Qwen3Model / Qwen2Model, with or without "model." before the names."""
    PREFIXES = ("model.",)

    def read_config(self, c):
        self.h, self.heads, self.layers = c["hidden_size"], c["num_attention_heads"], c["num_hidden_layers"]
        self.kv_heads = c.get("num_key_value_heads") or self.heads
        self.head_dim = c.get("head_dim") or self.h // self.heads
        self.eps = c.get("rms_norm_eps", 1e-6)
        theta = c.get("rope_theta")
        if theta is None:
            theta = (c.get("rope_parameters") or {}).get("rope_theta", 10000.0)
        self.theta = float(theta)
        self.qk_norm = c["model_type"] == "qwen3"
        if c.get("hidden_act", "silu") != "silu":
            raise ValueError("hidden_act must be silu")

    def is_linear(self, name):
        return name.endswith("_proj.weight")

    def max_positions(self):
        return self.config["max_position_embeddings"]

    def rotary(self, x, n):
        """x [n, heads, hd] rotated by positions 0..n-1 (rotate-half), the
        table in float32 as transformers' rotary embedding makes it:
        inv_freq = 1 / theta ** (arange(0, hd, 2) / hd), angle = p * inv_freq."""
        hd, f32 = self.head_dim, np.float32
        inv = f32(1) / (f32(self.theta) ** (np.arange(0, hd, 2).astype(f32) / f32(hd)))
        ang = np.arange(n).astype(f32)[:, None] * inv[None, :]
        cos = np.cos(ang).astype(np.float64)[:, None, :]
        sin = np.sin(ang).astype(np.float64)[:, None, :]
        x1, x2 = x[..., :hd // 2], x[..., hd // 2:]
        return np.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], -1)

    def layer(self, x, i):
        p, w, n, hd = f"layers.{i}.", self.w, x.shape[0], self.head_dim
        a = rmsnorm(x, w[p + "input_layernorm.weight"], self.eps)
        q = self.linear(a, p + "self_attn.q_proj").reshape(n, self.heads, hd)
        k = self.linear(a, p + "self_attn.k_proj").reshape(n, self.kv_heads, hd)
        v = self.linear(a, p + "self_attn.v_proj").reshape(n, self.kv_heads, hd)
        if self.qk_norm:
            q = rmsnorm(q, w[p + "self_attn.q_norm.weight"], self.eps)
            k = rmsnorm(k, w[p + "self_attn.k_norm.weight"], self.eps)
        q, k = self.rotary(q, n), self.rotary(k, n)
        group = self.heads // self.kv_heads
        ctx = np.empty((n, self.heads, hd))
        causal = np.tril(np.ones((n, n), bool))
        for j in range(self.heads):
            s = q[:, j] @ k[:, j // group].T / math.sqrt(hd)
            s = np.where(causal, s, -np.inf)
            s = np.exp(s - s.max(-1, keepdims=True))
            s /= s.sum(-1, keepdims=True)
            ctx[:, j] = s @ v[:, j // group]
        x = x + self.linear(ctx.reshape(n, self.heads * hd), p + "self_attn.o_proj")
        a = rmsnorm(x, w[p + "post_attention_layernorm.weight"], self.eps)
        f = silu(self.linear(a, p + "mlp.gate_proj")) * self.linear(a, p + "mlp.up_proj")
        return x + self.linear(f, p + "mlp.down_proj")

    def hidden_states(self, ids, type_ids=None):
        ids = np.asarray(ids, np.int64)
        x = self.w["embed_tokens.weight"][ids]
        for i in range(self.layers):
            x = self.layer(x, i)
        return rmsnorm(x, self.w["norm.weight"], self.eps)


FAMILIES = {"qwen3": Qwen, "qwen2": Qwen}


def load(folder, precision="f32"):
    c = _json(folder, "config.json")
    kind = c.get("model_type")
    if kind not in FAMILIES:
        raise ValueError(f"config.json: model_type {kind!r} is not one of {sorted(FAMILIES)}")
    return FAMILIES[kind](folder, precision)


__all__ = ["load", "Qwen", "rmsnorm", "round_to"]
