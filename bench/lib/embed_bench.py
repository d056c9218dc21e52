"""The embedding benchmark: the same sentences, one job each, drained through
Redis by gpuq's embed and by batching Python Streams workers on the same
weights: ONNX Runtime on a graph built from the model folder's safetensors
with onnx's helpers (as built, and as a careful team runs it: through
onnxruntime.transformers' optimizer, each read batch sorted by length into
sub-batches of 16; and so again on an AVX2 host, CPUID masked by
bench/avx2_host.c), and numpy. Tokenization in Python is Hugging Face
`tokenizers` (Rust), batched, padded to the longest text of each (sub-)batch.
The PyTorch worker (scripts/gpu-check's step 4, embed_gpu.py) is the same
loop on transformers' AutoModel.
   embed_bench.py worker ort|ort-careful|ort-int8|numpy|torch REDIS_PORT MODEL_DIR THREADS [MAX_BATCH [DEVICE DTYPE]]"""
import json
import os
import sys
import time

import msgpack
import numpy as np

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "ref"))
import bert_ref  # noqa: E402  (reads the folder: weights, pooling, max_length)
import pyenv  # noqa: E402  (.cache/pyenv on sys.path)

JOBS = "gpuq:{default}:jobs"
AVX2_HOST = os.path.join(ROOT, "build", "bench", "libavx2_host.so")
AVX2_PEER = "python-onnxruntime careful, AVX2 host"


def sentences(n, seed=0):
    """n sentences of 8 to 64 words drawn from the test corpus's words."""
    words = [w for t in pyenv.corpus() for w in t.split() if w.isprintable()]
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(words, rng.integers(8, 65))) for _ in range(n)]


def weights(folder):
    m = bert_ref.Bert(folder)
    return m, {k: np.asarray(v, np.float32) for k, v in m.w.items()}


# ---- the ONNX graph, from the same safetensors ----

def onnx_graph(folder, hf_export=False, scorer=False):
    """The encoder as an ONNX graph. hf_export: attention, its mask and GELU
    spelled as PyTorch's export of Hugging Face's BertModel spells them
    (separate q, k, v projections, a -10000 mask, Div by sqrt(2) before
    Erf), which is what onnxruntime.transformers' optimizer recognizes and
    fuses into its Attention and Gelu kernels. scorer: a cross-encoder
    (BertForSequenceClassification): token_type_ids in, the pooler (dense,
    tanh) and classifier on the first token, then sigmoid: y [batch, 1]."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    m, w = weights(folder)
    h, nh = m.h, m.heads
    dh = h // nh
    nodes, inits = [], []

    def const(name, a):
        inits.append(numpy_helper.from_array(np.asarray(a), name))
        return name

    def op(kind, ins, out, **attrs):
        nodes.append(helper.make_node(kind, ins, [out], name=out, **attrs))
        return out

    def dense(x, prefix, out):
        y = op("MatMul", [x, const(prefix + ".wt", w[prefix + ".weight"].T.copy())], out + "_mm")
        return op("Add", [y, const(prefix + ".b", w[prefix + ".bias"])], out)

    def layernorm(x, prefix, out):
        return op("LayerNormalization", [x, const(prefix + ".g", w[prefix + ".weight"]),
                                         const(prefix + ".bb", w[prefix + ".bias"])], out, axis=-1,
                  epsilon=m.eps)

    def hf_layer(x, p, bias):
        def heads(name, perm):
            y = dense(x, p + f"attention.self.{name}", p + name)
            y = op("Reshape", [y, const(p + name + ".shape", np.array([0, 0, nh, dh]))], p + name + "4")
            return op("Transpose", [y], p + name + "T", perm=perm)
        q, k, v = heads("query", [0, 2, 1, 3]), heads("key", [0, 2, 3, 1]), heads("value", [0, 2, 1, 3])
        s = op("Div", [op("MatMul", [q, k], p + "qk"), const(p + "sqrt_dh", np.float32(np.sqrt(dh)))], p + "s")
        ctx = op("MatMul", [op("Softmax", [op("Add", [s, bias], p + "sb")], p + "prob", axis=-1), v], p + "ctx")
        ctx = op("Reshape", [op("Transpose", [ctx], p + "ctxT", perm=[0, 2, 1, 3]),
                             const(p + "shape3", np.array([0, 0, h]))], p + "ctx3")
        a = dense(ctx, p + "attention.output.dense", p + "attn")
        x = layernorm(op("Add", [a, x], p + "res1"), p + "attention.output.LayerNorm", p + "x1")
        f = dense(x, p + "intermediate.dense", p + "inter")
        g = op("Erf", [op("Div", [f, const(p + "sqrt2", np.float32(np.sqrt(2)))], p + "fs")], p + "erf")
        f = op("Mul", [op("Mul", [f, op("Add", [g, const(p + "one", np.float32(1))], p + "erf1")], p + "fg"),
                       const(p + "half", np.float32(0.5))], p + "gelu")
        f = dense(f, p + "output.dense", p + "ffn")
        return layernorm(op("Add", [f, x], p + "res2"), p + "output.LayerNorm", p + "x" + p.split(".")[2] + "o")

    seq = op("Shape", ["input_ids"], "seq", start=1, end=2)
    pos = op("Slice", [const("pos_emb", w["embeddings.position_embeddings.weight"]), const("zero", np.array([0])),
                       seq, const("axis0", np.array([0]))], "pos")
    x = op("Gather", [const("word_emb", w["embeddings.word_embeddings.weight"]), "input_ids"], "words")
    x = op("Add", [x, pos], "x_pos")
    if scorer:
        types = op("Gather", [const("type_table", w["embeddings.token_type_embeddings.weight"]), "token_type_ids"],
                   "types")
        x = op("Add", [x, types], "x_emb")
    else:
        x = op("Add", [x, const("type_emb", w["embeddings.token_type_embeddings.weight"][0])], "x_emb")
    x = layernorm(x, "embeddings.LayerNorm", "x0")
    maskf = op("Cast", ["attention_mask"], "maskf", to=TensorProto.FLOAT)
    if hf_export:
        m4 = op("Unsqueeze", [op("Unsqueeze", ["attention_mask", const("ax1", np.array([1]))], "mask3d"),
                              const("ax2", np.array([2]))], "mask4d")
        m4 = op("Cast", [m4], "mask4f", to=TensorProto.FLOAT)
        bias = op("Mul", [op("Sub", [const("one", np.float32(1)), m4], "inv"), const("neg", np.float32(-10000))],
                  "bias")
    else:
        bias = op("Mul", [op("Sub", [const("one", np.float32(1)), maskf], "inv"), const("neg", np.float32(-1e9))],
                  "bias0")
        bias = op("Unsqueeze", [bias, const("axes12", np.array([1, 2]))], "bias")
    for i in range(m.layers):
        p = f"encoder.layer.{i}."
        if hf_export:
            x = hf_layer(x, p, bias)
            continue
        qkv_w = np.concatenate([w[p + f"attention.self.{n}.weight"] for n in ("query", "key", "value")])
        qkv_b = np.concatenate([w[p + f"attention.self.{n}.bias"] for n in ("query", "key", "value")])
        w[p + "qkv.weight"], w[p + "qkv.bias"] = qkv_w, qkv_b
        qkv = dense(x, p + "qkv", p + "qkv")
        qkv = op("Reshape", [qkv, const(p + "shape5", np.array([0, 0, 3, nh, dh]))], p + "qkv5")
        qkv = op("Transpose", [qkv], p + "qkvT", perm=[2, 0, 3, 1, 4])
        q, k, v = (op("Gather", [qkv, const(p + f"i{j}", np.array(j))], p + n, axis=0) for j, n in enumerate("qkv"))
        s = op("MatMul", [q, op("Transpose", [k], p + "kT", perm=[0, 1, 3, 2])], p + "s")
        s = op("Add", [op("Mul", [s, const(p + "scale", np.float32(1 / np.sqrt(dh)))], p + "ss"), bias], p + "sb")
        ctx = op("MatMul", [op("Softmax", [s], p + "prob", axis=-1), v], p + "ctx")
        ctx = op("Reshape", [op("Transpose", [ctx], p + "ctxT", perm=[0, 2, 1, 3]),
                             const(p + "shape3", np.array([0, 0, h]))], p + "ctx3")
        a = dense(ctx, p + "attention.output.dense", p + "attn")
        x = layernorm(op("Add", [x, a], p + "res1"), p + "attention.output.LayerNorm", p + "x1")
        f = dense(x, p + "intermediate.dense", p + "inter")
        g = op("Erf", [op("Mul", [f, const(p + "rs2", np.float32(1 / np.sqrt(2)))], p + "fs")], p + "erf")
        f = op("Mul", [op("Mul", [f, op("Add", [g, "one"], p + "erf1")], p + "fg"), const(p + "half", np.float32(0.5))],
               p + "gelu")
        f = dense(f, p + "output.dense", p + "ffn")
        x = layernorm(op("Add", [x, f], p + "res2"), p + "output.LayerNorm", p + f"x{i + 2}")
    if scorer:
        y = op("Gather", [x, const("i0", np.array(0))], "first", axis=1)
        y = op("Tanh", [dense(y, "pooler.dense", "pooler")], "pooled")
        y = op("Sigmoid", [dense(y, "classifier", "logit")], "scored")
    elif m.pooling == "cls":
        y = op("Gather", [x, const("i0", np.array(0))], "pooled", axis=1)
    else:
        m3 = op("Unsqueeze", [maskf, const("axis2", np.array([2]))], "mask3")
        total = op("ReduceSum", [op("Mul", [x, m3], "xm"), const("axis1", np.array([1]))], "sum", keepdims=0)
        y = op("Div", [total, op("ReduceSum", [m3, "axis1"], "count", keepdims=0)], "pooled")
    if m.normalize and not scorer:
        norm = op("Max", [op("ReduceL2", [y], "l2", axes=[1], keepdims=1),
                          const("eps", np.float32(1e-12))], "norm")
        y = op("Div", [y, norm], "normed")
    op("Identity", [y], "y")
    inputs = [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
              helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"])]
    if scorer:
        inputs.append(helper.make_tensor_value_info("token_type_ids", TensorProto.INT64, ["batch", "seq"]))
    graph = helper.make_graph(nodes, "bert", inputs,
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 1 if scorer else h])],
                              inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return model.SerializeToString()


# ---- the numpy forward, padded, f32 ----

def numpy_encoder(folder):
    m, w = weights(folder)
    h, nh = m.h, m.heads
    dh = h // nh

    def ln(x, p):
        return bert_ref._layernorm(x, w[p + ".weight"], w[p + ".bias"], m.eps)

    def dense(x, p):
        return x @ w[p + ".weight"].T + w[p + ".bias"]

    def run(ids, mask):
        b, s = ids.shape
        x = w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:s] \
            + w["embeddings.token_type_embeddings.weight"][0]
        x = ln(x, "embeddings.LayerNorm")
        bias = ((1 - mask) * -1e9).astype(np.float32)[:, None, None, :]
        for i in range(m.layers):
            p = f"encoder.layer.{i}."
            q, k, v = (dense(x, p + f"attention.self.{n}").reshape(b, s, nh, dh).transpose(0, 2, 1, 3)
                       for n in ("query", "key", "value"))
            sc = q @ k.transpose(0, 1, 3, 2) / np.float32(np.sqrt(dh)) + bias
            sc = np.exp(sc - sc.max(-1, keepdims=True))
            ctx = (sc / sc.sum(-1, keepdims=True)) @ v
            x = ln(x + dense(ctx.transpose(0, 2, 1, 3).reshape(b, s, h), p + "attention.output.dense"),
                   p + "attention.output.LayerNorm")
            f = dense(x, p + "intermediate.dense")
            f = 0.5 * f * (1 + bert_ref._erf(f / np.float32(np.sqrt(2))))
            x = ln(x + dense(f.astype(np.float32), p + "output.dense"), p + "output.LayerNorm")
        y = x[:, 0] if m.pooling == "cls" else (x * mask[:, :, None]).sum(1) / mask.sum(1, keepdims=True)
        if m.normalize:
            y = y / np.maximum(np.linalg.norm(y, axis=1, keepdims=True), 1e-12)
        return y.astype(np.float32)
    return run


def tokenized(folder, encode):
    """embed(texts) -> (y, tokens) with Hugging Face `tokenizers`, padded to
    the batch's longest text, and encode(ids, mask) -> y."""
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(os.path.join(folder, "tokenizer.json"))
    tok.enable_truncation(max_length=bert_ref.Bert(folder).max_length)
    tok.enable_padding()

    def embed(texts):
        enc = tok.encode_batch(texts)
        ids = np.array([e.ids for e in enc], np.int64)
        mask = np.array([e.attention_mask for e in enc], np.int64)
        return encode(ids, mask), mask.sum(1)
    return embed


def careful_ort(folder, threads, sub_batch=16, int8=False):
    """embed(texts) -> (y, tokens) as a careful ONNX Runtime worker does it:
    the graph through onnxruntime.transformers' optimizer (fused attention,
    LayerNorm and GELU where it finds them), and each read batch sorted by
    length into sub-batches of sub_batch texts, each padded to its own
    longest; plus what the optimizer fused. int8: then through
    onnxruntime.quantization's quantize_dynamic (int8 weights, activations
    quantized per batch), the usual next step of such a team."""
    import tempfile

    import onnx
    import onnxruntime as ort
    from onnxruntime.transformers import optimizer
    from tokenizers import Tokenizer
    m = bert_ref.Bert(folder)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "bert.onnx")
        with open(path, "wb") as f:
            f.write(onnx_graph(folder, hf_export=True))
        opt = optimizer.optimize_model(path, model_type="bert", num_heads=m.heads, hidden_size=m.h, opt_level=0)
        fused = {k: v for k, v in opt.get_fused_operator_statistics().items() if v}
        graph = opt.model.SerializeToString()
        if int8:
            from onnxruntime.quantization import QuantType, quantize_dynamic
            opt.save_model_to_file(path)
            quantize_dynamic(path, path + ".int8", weight_type=QuantType.QInt8,
                             extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
            with open(path + ".int8", "rb") as f:
                graph = f.read()
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    sess = ort.InferenceSession(graph, so, providers=["CPUExecutionProvider"])
    tok = Tokenizer.from_file(os.path.join(folder, "tokenizer.json"))
    tok.enable_truncation(max_length=m.max_length)
    tok.no_padding()        # each sub-batch is padded to its own longest below

    def embed(texts):
        enc = tok.encode_batch(texts)
        order = sorted(range(len(enc)), key=lambda i: len(enc[i].ids))
        y = [None] * len(enc)
        for s in range(0, len(order), sub_batch):
            part = order[s:s + sub_batch]
            width = max(len(enc[i].ids) for i in part)
            ids = np.zeros((len(part), width), np.int64)
            mask = np.zeros((len(part), width), np.int64)
            for r, i in enumerate(part):
                ids[r, :len(enc[i].ids)], mask[r, :len(enc[i].ids)] = enc[i].ids, 1
            for r, row in zip(part, sess.run(["y"], {"input_ids": ids, "attention_mask": mask})[0]):
                y[r] = row
        return np.array(y), np.array([len(e.ids) for e in enc])
    about = (f"onnxruntime {ort.__version__}, {threads} thread(s), optimizer-fused ({fused}), "
             f"{'dynamic int8 quantization, ' if int8 else ''}length-sorted sub-batches of {sub_batch}")
    return embed, about


def peer_path():
    """Modules the bundle carries for the PyTorch worker (GPUQ_PEER_PYTHON)
    come after the interpreter's own: what the image has wins. Hugging Face
    stays offline and quiet."""
    for k in ("HF_HUB_OFFLINE", "HF_HUB_DISABLE_PROGRESS_BARS"):
        os.environ.setdefault(k, "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    extra = os.environ.get("GPUQ_PEER_PYTHON")
    if extra and extra not in sys.path:
        sys.path.append(extra)


def torch_embedder(folder, device, dtype, threads):
    """embed(texts) -> (y, tokens) on PyTorch: transformers' AutoModel and
    AutoTokenizer, then the pooling and normalization of the folder's
    modules.json, which is what sentence-transformers runs for it; dtype
    f32, or the model cast to f16 (model.half()) or bf16. Pooling in f32."""
    peer_path()
    import torch
    from transformers import AutoModel, AutoTokenizer
    torch.set_num_threads(threads)
    m = bert_ref.Bert(folder)
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModel.from_pretrained(folder).eval().to(device)
    model = model.to({"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}[dtype])

    def embed(texts):
        f = tok(texts, padding=True, truncation=True, max_length=m.max_length, return_tensors="pt").to(device)
        with torch.inference_mode():
            x = model(**f).last_hidden_state.float()
            mask = f["attention_mask"].unsqueeze(-1).float()
            y = x[:, 0] if m.pooling == "cls" else (x * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            if m.normalize:
                y = torch.nn.functional.normalize(y, dim=1)
            return y.cpu().numpy(), f["attention_mask"].sum(1).cpu().numpy()
    for _ in range(2):      # warm up: the first calls set the device up
        embed([" ".join(["warm"] * (8 + 4 * i)) for i in range(16)])
    import transformers
    where = torch.cuda.get_device_name(device) if device.startswith("cuda") else f"{threads} CPU thread(s)"
    return embed, f"torch {torch.__version__}, transformers {transformers.__version__}, {dtype} on {where}"


def serve(kind, port, folder, threads, max_batch=64, device="cpu", dtype="f32"):
    import redis
    about = ""
    if kind == "torch":
        embed, about = torch_embedder(folder, device, dtype, threads)
    elif kind in ("ort-careful", "ort-int8"):
        embed, about = careful_ort(folder, threads, int8=kind == "ort-int8")
    elif kind == "ort":
        import onnxruntime as ort
        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
        sess = ort.InferenceSession(onnx_graph(folder), so, providers=["CPUExecutionProvider"])
        about = f"onnxruntime {ort.__version__}, {so.intra_op_num_threads} thread(s), CPUExecutionProvider"
        embed = tokenized(folder, lambda ids, mask: sess.run(["y"], {"input_ids": ids, "attention_mask": mask})[0])
    else:
        about = f"numpy {np.__version__}"
        run = numpy_encoder(folder)
        embed = tokenized(folder, lambda ids, mask: run(ids, mask.astype(np.float32)))
    if os.environ.get("LD_PRELOAD", "").endswith("libavx2_host.so"):
        from numpy.core._multiarray_umath import __cpu_features__ as seen
        about += (", CPUID masked by bench/avx2_host.c (numpy sees AVX2 "
                  f"{'yes' if seen['AVX2'] else 'no'}, AVX-512F {'yes' if seen['AVX512F'] else 'no'})")
    r = redis.Redis(port=port)
    try:
        r.xgroup_create(JOBS, "workers", id="0", mkstream=True)
    except redis.ResponseError:
        pass
    print("ready", about, flush=True)
    while True:
        got = r.xreadgroup("workers", kind, {JOBS: ">"}, count=max_batch, block=1000)
        if not got:
            continue
        entries = got[0][1]
        jobs = [msgpack.unpackb(f[b"job"]) for _, f in entries]
        y, tokens = embed([j["inputs"]["text"] for j in jobs])
        pipe = r.pipeline(transaction=True)
        for (eid, _), j, row, n in zip(entries, jobs, y, tokens):
            res = msgpack.packb({"id": j.get("id") or eid.decode(), "status": "ok", "outputs": {
                "y": {"dtype": "f32", "shape": [1, len(row)], "data": row.astype("<f4").tobytes()},
                "tokens": {"dtype": "i32", "shape": [1], "data": np.int32(n).tobytes()}}})
            pipe.rpush(j["reply_to"], res)
            pipe.xack(JOBS, "workers", eid)
        pipe.execute()


# ---- the drains, in one run on the bench's Redis ----

def drain(b, texts, start, reply, timeout=None, before_stop=None):
    """Enqueues one job per text, starts a worker (start() -> Popen, once it
    is ready), times the drain; sentences/s, worker CPU ms per sentence, and
    the results by id. Past timeout seconds, RuntimeError says how far it got.
    before_stop() (a dict) runs once drained, with the worker still up."""
    import subprocess  # noqa: F401  (start() uses it)
    from bench import cpu_seconds
    b.r.flushall()
    pipe = b.r.pipeline(transaction=False)
    for i, t in enumerate(texts):
        pipe.xadd(JOBS, {"job": msgpack.packb({"op": "embed", "model": "t", "id": f"e{i}", "inputs": {"text": t},
                                               "reply_to": reply, "result_ttl": 0})})
        if i % 1000 == 999:
            pipe.execute()
    pipe.execute()
    p = start()
    try:
        cpu0, t0 = cpu_seconds(p.pid), time.time()
        while (done := b.r.llen(reply)) < len(texts):     # from ready to the last result
            if p.poll() is not None:
                raise RuntimeError(f"the worker exited with {p.returncode}")
            if timeout and time.time() - t0 > timeout:
                raise RuntimeError(f"TIMED OUT: {done} of {len(texts)} results in {timeout:.0f} s "
                                   f"({done / timeout:.1f} sentences/s)")
            time.sleep(0.01)
        rate = len(texts) / (time.time() - t0)
        cpu = cpu_seconds(p.pid) - cpu0
        extra = before_stop() if before_stop else {}
    finally:
        p.kill()
        p.wait()
    got = {}
    for raw in b.r.lrange(reply, 0, -1):
        r = msgpack.unpackb(raw)
        got[r["id"]] = (np.frombuffer(r["outputs"]["y"]["data"], "<f4"),
                        int(np.frombuffer(r["outputs"]["tokens"]["data"], "<i4")[0]))
    return dict({"sentences": len(texts), "sentences_per_s": rate, "cpu_ms_per_sentence": cpu / len(texts) * 1e3},
                **extra), got


def gemm_limit(env=None):
    """The CPU backend's GEMM rate on the encoder's dense shapes, one thread
    (bench/bench_cpu_gemm): one dict per shape and type."""
    import subprocess
    tool = os.path.join(ROOT, "build", "bench", "bench_cpu_gemm")
    out = subprocess.check_output([tool, "1"], text=True, env=env and dict(os.environ, **env))
    return [json.loads(line) for line in out.splitlines()]


def encoder_gflop(folder, tokens):
    """GFLOP the encoder spends on sequences of these token counts: the
    dense layers and attention's two products (multiply-adds counted as 2)."""
    m = bert_ref.Bert(folder)
    h, inner = m.h, int(m.w["encoder.layer.0.intermediate.dense.weight"].shape[0])
    per_layer = sum(2 * t * (4 * h * h + 2 * h * inner) + 4 * t * t * h for t in tokens)
    return m.layers * per_layer / 1e9


def backend_line(b):
    """What the gpuq worker logged it runs on ("cpu (oneDNN ..., f32, 1 thread)")."""
    import re
    log = open(os.path.join(b.tmp, "worker.log")).read()
    got = re.search(r"backend (.*?)(;|$)", log, re.M)
    return got.group(1) if got else "?"


def python_peer(b, script, args, kernels, name, env=None):
    """A start() for drain: runs `python script worker args...` (with env
    added to the bench's), which prints 'ready <what it runs>' once it
    listens; that goes into kernels[name]."""
    def start():
        import subprocess
        p = subprocess.Popen([sys.executable, os.path.abspath(script), "worker", *args], env=dict(b.env, **(env or {})),
                             stdout=subprocess.PIPE, text=True)
        line = p.stdout.readline()
        assert line.startswith("ready"), line
        kernels[name] = line[len("ready"):].strip()
        return p
    return start


def run(b, n, out_dir):
    folder = pyenv.model_dir()
    texts = sentences(n)
    reply = "gpuq:{default}:reply:embed"
    res, outs, kernels = {}, {}, {}

    def python_worker(kind, env=None, name=None):
        return python_peer(b, __file__, [kind, str(b.port), folder, str(b.threads)], kernels, name or kind, env)

    def gpuq(*extra, binary=None, env=None):
        def start():
            kw = {"binary": binary} if binary else {}
            return b.worker("--model", f"t={folder}", *extra, env=env and dict(os.environ, **env), **kw)
        return start

    starts = {"gpuq f32": gpuq(), "gpuq bf16": gpuq("--precision", "bf16"),
              "gpuq f32, ISA capped at AVX2": gpuq(env={"ONEDNN_MAX_CPU_ISA": "AVX2"})}
    if b.a.compare:
        starts[f"gpuq f32, {b.a.compare}"] = gpuq(binary=b.a.compare)
    starts.update({"python-onnxruntime": python_worker("ort"),
                   "python-onnxruntime careful": python_worker("ort-careful"),
                   # an AVX2 host as ONNX Runtime sees one: its MLAS picks kernels by CPUID
                   AVX2_PEER: python_worker("ort-careful", {"LD_PRELOAD": AVX2_HOST}, "ort-careful-avx2"),
                   "python-onnxruntime careful, int8": python_worker("ort-int8"),
                   "python-numpy": python_worker("numpy")})
    for name, start in starts.items():
        res[name], outs[name] = drain(b, texts, start, reply)
        if name.startswith("gpuq"):
            kernels[name] = backend_line(b)
        print(name, res[name], file=sys.stderr, flush=True)
    limit = gemm_limit() + gemm_limit({"ONEDNN_MAX_CPU_ISA": "AVX2"})
    ids = sorted(outs["gpuq f32"])
    want = np.array([outs["gpuq f32"][i][0] for i in ids])
    tokens = [outs["gpuq f32"][i][1] for i in ids]
    gflop = encoder_gflop(folder, tokens)
    for name in starts:
        y = np.array([outs[name][i][0] for i in ids])
        res[name]["max_abs_diff_to_gpuq"] = float(np.abs(y - want).max())
        cos = (y * want).sum(1) / np.linalg.norm(y, axis=1) / np.linalg.norm(want, axis=1)
        res[name]["min_cosine_to_gpuq"] = float(cos.min())
        res[name]["mean_cosine_to_gpuq"] = float(cos.mean())
        res[name]["tokens"] = sum(outs[name][i][1] for i in ids)
        res[name]["gflops_per_cpu_s"] = gflop / (res[name]["cpu_ms_per_sentence"] * n / 1e3)
    def base(name):     # the AVX2 rows against the peer on an AVX2 host
        return res[AVX2_PEER if "AVX2" in name and AVX2_PEER in res else "python-onnxruntime careful"]
    lines = [f"# Embedding benchmark: {n} sentences of 8-64 words, all-MiniLM-L6-v2, one job each, "
             f"through Redis, {b.threads} compute thread(s), {b.machine()['cpu']}", "",
             "| worker | sentences/s | worker CPU ms/sentence | sentences per CPU s vs careful ONNX Runtime "
             "(AVX2 rows: on an AVX2 host) | "
             "encoder GFLOP per CPU s | tokens | max abs diff to gpuq f32 | cosine to gpuq f32, min / mean |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, r in res.items():
        lines.append(f"| {name} | {r['sentences_per_s']:.1f} | {r['cpu_ms_per_sentence']:.2f} | "
                     f"{base(name)['cpu_ms_per_sentence'] / r['cpu_ms_per_sentence']:.2f}x | {r['gflops_per_cpu_s']:.0f} | "
                     f"{r['tokens']} | {r['max_abs_diff_to_gpuq']:.1e} | {r['min_cosine_to_gpuq']:.6f} / "
                     f"{r['mean_cosine_to_gpuq']:.6f} |")
    lines += ["", "What each ran:", ""] + [f"- {k}: {v}" for k, v in kernels.items()]
    lines += ["", "The limit: the CPU backend's GEMM (bench/bench_cpu_gemm, one thread, x [m, k] times "
              "w [n, k] transposed, as the encoder's dense layers):", "",
              "| m × n × k | type | GFLOP/s | kernel |", "| --- | --- | --- | --- |"]
    lines += [f"| {g['m']} × {g['n']} × {g['k']} | {g['type']} | {g['gflops']:.0f} | {g['kernel']} |"
              for g in limit if g["type"] != "fma"]
    for t, name, isa in (("f32", "gpuq f32", None), ("bf16", "gpuq bf16", None),
                         ("f32", "gpuq f32, ISA capped at AVX2", "avx2,")):
        rates = [g["gflops"] for g in limit if g["type"] == t and g["n"] != g["k"]
                 and (isa in g["kernel"] if isa else "avx2," not in g["kernel"])]
        if rates and name in res:
            peak = sum(rates) / len(rates)
            res[name]["fraction_of_gemm_rate"] = res[name]["gflops_per_cpu_s"] / peak
            lines.append(f"\n{name} sustains {res[name]['gflops_per_cpu_s']:.0f} GFLOP per CPU second, "
                         f"{100 * res[name]['fraction_of_gemm_rate']:.0f}% of its GEMM's {peak:.0f} GFLOP/s "
                         "on the encoder's two feed-forward shapes; every FLOP at that rate would make it "
                         f"{base(name)['cpu_ms_per_sentence'] / (gflop / n / peak * 1e3):.2f}x its peer.")
    # the core's own f32 limit (the native run's, then the AVX2 one's): what
    # the encoder's FLOPs alone take at it bounds every f32 worker on that ISA
    fma = [g for g in limit if g["type"] == "fma"]
    for name, g in zip(("gpuq f32", "gpuq f32, ISA capped at AVX2"), fma[:1] + fma[-1:]):
        if name not in res:
            continue
        floor = gflop / n / g["gflops"] * 1e3       # ms per sentence
        peer = base(name)
        res[name]["fma_gflops"] = g["gflops"]
        lines.append(f"\n{name}: the core's {g['isa']} f32 limit ({g['kernel']}) is {g['gflops']:.0f} GFLOP/s. "
                     f"The encoder's {gflop / n:.2f} GFLOP per sentence take {floor:.2f} ms at it, so no f32 worker "
                     f"on this ISA passes {peer['cpu_ms_per_sentence'] / floor:.2f}x its peer here. gpuq runs at "
                     f"{100 * res[name]['gflops_per_cpu_s'] / g['gflops']:.0f}% of the limit, its peer at "
                     f"{100 * peer['gflops_per_cpu_s'] / g['gflops']:.0f}%.")
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "embed.json"), "w") as f:
        json.dump({"machine": b.machine(), "embed": res, "kernels": kernels, "gemm": limit}, f, indent=1)
    with open(os.path.join(out_dir, "embed.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__" and sys.argv[1:2] == ["worker"]:
    serve(sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5]), *map(int, sys.argv[6:7]), *sys.argv[7:9])
elif __name__ == "__main__":
    print(json.dumps(sentences(int(sys.argv[1]))[:3], indent=1))
