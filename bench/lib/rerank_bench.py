"""The rerank benchmark: Q queries of 100 documents each, one job per query,
drained through Redis by gpuq's rerank and by a careful ONNX Runtime worker
(the cross-encoder's graph through onnxruntime.transformers' optimizer, each
read batch's pairs sorted by length into sub-batches of 16, padded to their
own longest; pairs tokenized by Hugging Face `tokenizers`, cut longest first
as sentence-transformers' CrossEncoder cuts them). Same jobs, one run.

The model is all-MiniLM-L6-v2's encoder with a random pooler and classifier
(seeded): the shape of cross-encoder/ms-marco-MiniLM-L-6-v2 (6 layers, 384
wide, 12 heads, BertForSequenceClassification, one label), which no PyPI
wheel carries; the work per pair is the same as that model's.
   rerank_bench.py worker REDIS_PORT MODEL_DIR THREADS"""
import json
import os
import shutil
import sys
import time

import msgpack
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import embed_bench  # noqa: E402  (sentences, weights, the ONNX graph; puts tests/ref on the path)
import family_models  # noqa: E402  (write_safetensors)
import pyenv  # noqa: E402

JOBS = embed_bench.JOBS
DOCS = 100


def cross_encoder(out):
    """out/: MiniLM's encoder under bert., a random pooler and classifier, its tokenizer."""
    src = pyenv.model_dir()
    os.makedirs(out, exist_ok=True)
    for f in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        if os.path.exists(os.path.join(src, f)):
            shutil.copy(os.path.join(src, f), out)
    with open(os.path.join(src, "config.json")) as f:
        cfg = json.load(f)
    cfg.update(architectures=["BertForSequenceClassification"], id2label={"0": "LABEL_0"}, label2id={"LABEL_0": 0})
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg, f)
    _, w = embed_bench.weights(src)
    rng = np.random.default_rng(11)
    h = cfg["hidden_size"]
    t = {"bert." + k: v for k, v in w.items()}
    t["bert.pooler.dense.weight"] = rng.standard_normal((h, h)) / np.sqrt(h)
    t["bert.pooler.dense.bias"] = rng.standard_normal(h) * 0.1
    t["classifier.weight"] = rng.standard_normal((1, h)) / np.sqrt(h)
    t["classifier.bias"] = np.zeros(1)
    family_models.write_safetensors(os.path.join(out, "model.safetensors"), t)
    return out


def jobs_for(q):
    """q queries (8-16 words) with 100 documents (8-64 words) each."""
    queries = [" ".join(s.split()[:8 + i % 9]) for i, s in enumerate(embed_bench.sentences(q, seed=3))]
    docs = embed_bench.sentences(q * DOCS, seed=4)
    return [(queries[i], docs[i * DOCS:(i + 1) * DOCS]) for i in range(q)]


def serve(port, folder, threads, sub_batch=16):
    """The careful ONNX Runtime rerank worker: a read batch's pairs sorted by
    length into sub-batches of sub_batch, each padded to its own longest."""
    import tempfile

    import onnxruntime as ort
    import redis
    from onnxruntime.transformers import optimizer
    from tokenizers import Tokenizer
    m, _ = embed_bench.weights(folder)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "ce.onnx")
        with open(path, "wb") as f:
            f.write(embed_bench.onnx_graph(folder, hf_export=True, scorer=True))
        opt = optimizer.optimize_model(path, model_type="bert", num_heads=m.heads, hidden_size=m.h, opt_level=0)
        fused = {k: v for k, v in opt.get_fused_operator_statistics().items() if v}
        graph = opt.model.SerializeToString()
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    sess = ort.InferenceSession(graph, so, providers=["CPUExecutionProvider"])
    tok = Tokenizer.from_file(os.path.join(folder, "tokenizer.json"))
    tok.enable_truncation(max_length=m.max_length)     # longest first, as CrossEncoder
    tok.no_padding()
    r = redis.Redis(port=port)
    try:
        r.xgroup_create(JOBS, "workers", id="0", mkstream=True)
    except redis.ResponseError:
        pass
    print("ready", f"onnxruntime {ort.__version__}, {threads} thread(s), optimizer-fused ({fused}), "
          f"length-sorted sub-batches of {sub_batch}", flush=True)
    while True:
        got = r.xreadgroup("workers", "ort", {JOBS: ">"}, count=4, block=1000)
        if not got:
            continue
        entries = got[0][1]
        jobs = [msgpack.unpackb(f[b"job"]) for _, f in entries]
        pairs = [(j["inputs"]["query"], d) for j in jobs for d in j["inputs"]["documents"]]
        enc = tok.encode_batch(pairs)
        order = sorted(range(len(enc)), key=lambda i: len(enc[i].ids))
        scores = np.zeros(len(enc), np.float32)
        for s in range(0, len(order), sub_batch):
            part = order[s:s + sub_batch]
            width = max(len(enc[i].ids) for i in part)
            ids, mask, types = (np.zeros((len(part), width), np.int64) for _ in range(3))
            for row, i in enumerate(part):
                n = len(enc[i].ids)
                ids[row, :n], mask[row, :n], types[row, :n] = enc[i].ids, 1, enc[i].type_ids
            y = sess.run(["y"], {"input_ids": ids, "attention_mask": mask, "token_type_ids": types})[0]
            scores[part] = y[:, 0]
        pipe = r.pipeline(transaction=True)
        at = 0
        for (eid, _), j in zip(entries, jobs):
            n = len(j["inputs"]["documents"])
            pipe.rpush(j["reply_to"], msgpack.packb({"id": j["id"], "status": "ok", "outputs": {"scores": {
                "dtype": "f32", "shape": [n], "data": scores[at:at + n].astype("<f4").tobytes()}}}))
            pipe.xack(JOBS, "workers", eid)
            at += n
        pipe.execute()


def drain(b, jobs, start, reply):
    """Enqueues the rerank jobs, starts a worker, times the drain: pairs/s,
    worker CPU ms per pair, and the scores by job."""
    import subprocess  # noqa: F401  (start() uses it)
    from bench import cpu_seconds
    b.r.flushall()
    pipe = b.r.pipeline(transaction=False)
    for i, (q, docs) in enumerate(jobs):
        pipe.xadd(JOBS, {"job": msgpack.packb({"op": "rerank", "model": "ce", "id": f"r{i}", "reply_to": reply,
                                               "result_ttl": 0, "inputs": {"query": q, "documents": docs}})})
    pipe.execute()
    p = start()
    try:
        cpu0, t0 = cpu_seconds(p.pid), time.time()
        while b.r.llen(reply) < len(jobs):
            if p.poll() is not None:
                raise RuntimeError(f"the worker exited with {p.returncode}")
            time.sleep(0.01)
        dt, cpu = time.time() - t0, cpu_seconds(p.pid) - cpu0
    finally:
        p.kill()
        p.wait()
    got = {}
    for raw in b.r.lrange(reply, 0, -1):
        r = msgpack.unpackb(raw)
        assert r["status"] == "ok", r.get("error")
        got[r["id"]] = np.frombuffer(r["outputs"]["scores"]["data"], "<f4")
    pairs = len(jobs) * DOCS
    return {"queries": len(jobs), "pairs": pairs, "pairs_per_s": pairs / dt, "cpu_ms_per_pair": cpu / pairs * 1e3}, got


def run(b, q, out_dir):
    folder = cross_encoder(os.path.join(b.tmp, "ce"))
    jobs = jobs_for(q)
    reply = "gpuq:{default}:reply:rerank"
    kernels, res, outs = {}, {}, {}

    starts = {"gpuq f32": lambda: b.worker("--model", f"ce={folder}"),
              "gpuq bf16": lambda: b.worker("--model", f"ce={folder}", "--precision", "bf16"),
              "python-onnxruntime careful": embed_bench.python_peer(
                  b, __file__, [str(b.port), folder, str(b.threads)], kernels, "python-onnxruntime careful")}
    for name, start in starts.items():
        res[name], outs[name] = drain(b, jobs, start, reply)
        if name.startswith("gpuq"):
            kernels[name] = embed_bench.backend_line(b)
        print(name, res[name], file=sys.stderr, flush=True)
    ids = sorted(outs["gpuq f32"])
    want = np.concatenate([outs["gpuq f32"][i] for i in ids])
    for name in starts:
        got = np.concatenate([outs[name][i] for i in ids])
        res[name]["max_abs_diff_to_gpuq"] = float(np.abs(got - want).max())
    base = res["python-onnxruntime careful"]
    lines = [f"# Rerank benchmark: {q} queries of {DOCS} documents (8-64 words), one job per query, a "
             f"MiniLM-L6-shaped cross-encoder, through Redis, {b.threads} compute thread(s), {b.machine()['cpu']}", "",
             "| worker | pairs/s | worker CPU ms/pair | pairs per CPU s vs careful ONNX Runtime | max abs diff "
             "to gpuq f32 (sigmoid scores) |", "| --- | --- | --- | --- | --- |"]
    for name, r in res.items():
        lines.append(f"| {name} | {r['pairs_per_s']:.1f} | {r['cpu_ms_per_pair']:.2f} | "
                     f"{base['cpu_ms_per_pair'] / r['cpu_ms_per_pair']:.2f}x | {r['max_abs_diff_to_gpuq']:.1e} |")
    lines += ["", "What each ran:", ""] + [f"- {k}: {v}" for k, v in kernels.items()]
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "rerank.json"), "w") as f:
        json.dump({"machine": b.machine(), "rerank": res, "kernels": kernels}, f, indent=1)
    with open(os.path.join(out_dir, "rerank.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__" and sys.argv[1:2] == ["worker"]:
    serve(int(sys.argv[2]), sys.argv[3], int(sys.argv[4]))
