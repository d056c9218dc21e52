"""Binary knn against f32 on a real embedded corpus: sentences made from
templates (and the test corpus) embedded with all-MiniLM-L6-v2 through the
worker's embed op, held-out sentences as queries; recall@10 of the Hamming
search, with and without rescore, against the exact f32 cosine top 10, and
each search's speed through the worker on the same index.
   bench.py --knn-binary N [--knn-queries Q]   (writes knn_binary.md and knn_binary.json)"""
import itertools
import json
import os
import struct
import sys
import time

import msgpack
import numpy as np

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "ref"))
import pyenv  # noqa: E402

JOBS = "gpuq:{default}:jobs"

SUBJECTS = ["The old farmer", "A young engineer", "My neighbour", "The city council", "A small startup",
            "The school teacher", "Our football team", "The hospital nurse", "A famous chef", "The museum guide",
            "A retired pilot", "The local bakery", "Her grandmother", "The police officer", "A shy student",
            "The lead guitarist", "A travelling salesman", "The night guard", "A marine biologist",
            "The village doctor", "His younger brother", "The bank manager", "A street artist", "The librarian"]
VERBS = ["repaired", "painted", "sold", "bought", "photographed", "cleaned", "lost", "found", "designed",
         "borrowed", "delivered", "inspected", "cooked", "planted", "described", "forgot about", "wrote about",
         "argued over", "celebrated", "studied"]
OBJECTS = ["a rusty bicycle", "the broken window", "fresh tomatoes", "an antique clock", "the quarterly report",
           "a wooden boat", "the new bridge", "chocolate cake", "a stray cat", "the solar panels",
           "an old violin", "the vegetable garden", "a mountain map", "the wedding dress", "a laptop battery",
           "the tax forms", "a jar of honey", "the train schedule", "a pair of boots", "the election results"]
PLACES = ["near the harbour", "after the storm", "in the early morning", "before the holidays",
          "behind the station", "during the festival", "at the market", "on a rainy Tuesday",
          "next to the river", "in the mountains", "at the airport", "late at night", "in the old town",
          "for the charity event", "without telling anyone", "with great care"]


def sentences(n, seed):
    """n distinct template sentences, in a random order of seed."""
    combos = list(itertools.product(range(len(SUBJECTS)), range(len(VERBS)), range(len(OBJECTS)),
                                    range(len(PLACES))))
    rng = np.random.default_rng(seed)
    pick = rng.permutation(len(combos))[:n]
    return [f"{SUBJECTS[combos[i][0]]} {VERBS[combos[i][1]]} {OBJECTS[combos[i][2]]} {PLACES[combos[i][3]]}."
            for i in pick]


def save_index(path, emb):
    emb = np.ascontiguousarray(emb, np.float32)
    h = json.dumps({"embeddings": {"dtype": "F32", "shape": list(emb.shape),
                                   "data_offsets": [0, emb.nbytes]}}).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + emb.tobytes())


def call(b, jobs, reply, timeout=600):
    """Runs jobs (enqueued together), their results in order, and the wall time."""
    b.r.delete(reply)
    t0 = time.time()
    pipe = b.r.pipeline(transaction=False)
    for i, j in enumerate(jobs):
        pipe.xadd(JOBS, {"job": msgpack.packb(dict(j, id=f"r{i}", reply_to=reply, result_ttl=0))})
    pipe.execute()
    out = {}
    for _ in jobs:
        item = b.r.blpop([reply], timeout=timeout)
        if item is None:
            raise RuntimeError("no result")
        r = msgpack.unpackb(item[1], raw=False)
        if r["status"] != "ok":
            raise RuntimeError(r["error"])
        out[r["id"]] = r
    return [out[f"r{i}"] for i in range(len(jobs))], time.time() - t0


def arr(t):
    dt = {"f32": "<f4", "i64": "<i8", "u8": "u1"}[t["dtype"]]
    return np.frombuffer(t["data"], dtype=dt).reshape(t["shape"])


def embed(b, texts, reply, per_job=256):
    jobs = [{"op": "embed", "model": "t", "inputs": {"text": texts[i:i + per_job]}}
            for i in range(0, len(texts), per_job)]
    res, secs = call(b, jobs, reply)
    return np.concatenate([arr(r["outputs"]["y"]) for r in res]), secs


def run(b, n, out_dir):
    n_queries = b.a.knn_queries
    folder = pyenv.model_dir()
    corpus = list(pyenv.corpus())
    texts = sentences(n + n_queries, seed=1)
    docs, queries = corpus + texts[:n - len(corpus)], texts[n:]
    reply = "gpuq:{default}:reply:knnbin"
    p = b.worker("--model", f"t={folder}")
    try:
        emb, secs_d = embed(b, docs, reply)
        qf, secs_q = embed(b, queries, reply)
    finally:
        p.kill()
        p.wait()
    print(f"embedded {len(docs)} + {len(queries)} sentences in {secs_d + secs_q:.1f} s", file=sys.stderr)
    path = os.path.join(b.tmp, "index.safetensors")
    save_index(path, emb)
    # the reference: exact cosine (MiniLM's vectors are normalized)
    e = emb.astype(np.float64) / np.linalg.norm(emb, axis=1, keepdims=True)
    q = qf.astype(np.float64) / np.linalg.norm(qf, axis=1, keepdims=True)
    truth = np.argsort(-(q @ e.T), axis=1, kind="stable")[:, :10]
    qbits = np.packbits(qf > 0, axis=-1)
    modes = [("f32 cosine", {"q": qf}, {}), ("binary (Hamming)", {"q": qbits}, {})]
    modes += [(f"binary, rescore {m}", {"q": qf}, {"rescore": m}) for m in (2, 4, 10)]
    p = b.worker("--model", f"ix={path}")
    rows, results = 100, []
    try:
        for name, inp, params in modes:
            jobs = [{"op": "knn", "model": "ix", "inputs": {"q": {"dtype": "u8" if v.dtype == np.uint8 else "f32",
                                                                 "shape": [len(v[i:i + rows]), v.shape[1]],
                                                                 "data": np.ascontiguousarray(v[i:i + rows]).tobytes()}
                                                           for _, v in inp.items()},
                     "params": dict(params, k=10)} for i in range(0, len(queries), rows)]
            call(b, jobs[:2], reply)                                    # warm
            res, secs = call(b, jobs, reply)
            got = np.concatenate([arr(r["outputs"]["indices"]) for r in res])
            recall = float(np.mean([len(set(got[i]) & set(truth[i])) / 10 for i in range(len(got))]))
            results.append({"search": name, "recall@10": round(recall, 4), "queries/s": round(len(queries) / secs)})
            print(results[-1], file=sys.stderr, flush=True)
    finally:
        p.kill()
        p.wait()
    out = {"index": len(docs), "queries": len(queries), "dim": int(emb.shape[1]), "model": "all-MiniLM-L6-v2",
           "backend": b.a.backend, "threads": b.threads, "results": results}
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "knn_binary.json"), "w") as f:
        json.dump(out, f, indent=1)
    md = [f"# Binary knn against f32: {len(docs)} sentences embedded with all-MiniLM-L6-v2 ({emb.shape[1]} dims), "
          f"{len(queries)} held-out queries, k = 10, {b.a.backend} backend, {b.threads} thread(s)", "",
          "| search | recall@10 vs f32 cosine | queries/s (jobs of 100, enqueue to last result) |", "| --- | --- | --- |"]
    md += [f"| {r['search']} | {r['recall@10']:.3f} | {r['queries/s']} |" for r in results]
    with open(os.path.join(out_dir, "knn_binary.md"), "w") as f:
        f.write("\n".join(md) + "\n")
    print("\n".join(md))
