"""The embedding cache's benchmark on all-MiniLM-L6-v2: a worker first
embeds N/2 texts (a warm-up, not timed), then N jobs of one text each are
timed, every one a new text, or half of them repeating a warm-up text
(embedded seconds before: what a cache can hold); each by a gpuq worker
without the cache and with --embed-cache-ttl. Sentences/s, worker CPU per
sentence over the timed jobs, the cache's hits and misses as its metrics
count them, and whether every cached result equals the computed one. Same
jobs for each worker, one run. (Repeats inside one read batch are computed
once with or without the cache: in-batch dedup.)"""
import os
import re
import sys
import time
import urllib.request

import msgpack
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import embed_bench  # noqa: E402  (sentences; puts tests/ref on the path)
import pyenv  # noqa: E402

JOBS = embed_bench.JOBS


def texts_for(n, repeat, seed=5):
    """The warm-up texts (n // 2) and the n timed ones, a fraction `repeat`
    of which repeat a warm-up text."""
    fresh = embed_bench.sentences(n + n // 2, seed=seed)
    earlier, rng = fresh[n:], np.random.default_rng(seed)
    return earlier, [earlier[rng.integers(len(earlier))] if rng.random() < repeat else fresh[i] for i in range(n)]


def send(b, texts, tag, reply):
    pipe = b.r.pipeline(transaction=False)
    for i, t in enumerate(texts):
        pipe.xadd(JOBS, {"job": msgpack.packb({"op": "embed", "model": "t", "id": f"{tag}{i}", "inputs": {"text": t},
                                               "reply_to": reply, "result_ttl": 0})})
    pipe.execute()


def wait(b, reply, n, p):
    while b.r.llen(reply) < n:
        if p.poll() is not None:
            raise RuntimeError(f"the worker exited with {p.returncode}")
        time.sleep(0.01)


def phase(b, folder, earlier, texts, extra, port):
    """Warm-up then the timed jobs on one worker: stats and results by id."""
    from bench import cpu_seconds
    b.r.flushall()
    reply = "gpuq:{default}:reply:embed"
    p = b.worker("--model", f"t={folder}", *extra)
    try:
        send(b, earlier, "w", reply)
        wait(b, reply, len(earlier), p)
        b.r.delete(reply)
        hits0 = metric(port, HIT) if port else 0
        send(b, texts, "e", reply)
        cpu0, t0 = cpu_seconds(p.pid), time.time()
        wait(b, reply, len(texts), p)
        r = {"sentences": len(texts), "sentences_per_s": len(texts) / (time.time() - t0),
             "cpu_ms_per_sentence": (cpu_seconds(p.pid) - cpu0) / len(texts) * 1e3}
        if port:
            r["cache_hits"] = metric(port, HIT) - hits0
            r["cache_misses"] = len(texts) - r["cache_hits"]
    finally:
        p.kill()
        p.wait()
    got = {}
    for raw in b.r.lrange(reply, 0, -1):
        x = msgpack.unpackb(raw)
        got[x["id"]] = np.frombuffer(x["outputs"]["y"]["data"], "<f4")
    return r, got


HIT = 'gpuq_cache_rows_total{result="hit"}'


def metric(port, name):
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    got = re.search(r"^" + re.escape(name) + r" (\S+)$", body, re.M)
    return float(got.group(1)) if got else 0.0


def run(b, n, out_dir):
    import json

    from bench import free_port
    folder = pyenv.model_dir()
    res, outs = {}, {}
    for repeat in (0.0, 0.5):
        earlier, texts = texts_for(n, repeat)
        for cache in (False, True):
            name = f"{int(repeat * 100)}% repeats, {'cache 60 s' if cache else 'no cache'}"
            port = free_port() if cache else 0
            extra = ["--embed-cache-ttl", "60", "--metrics-addr", f"127.0.0.1:{port}"] if cache else []
            r, got = phase(b, folder, earlier, texts, extra, port)
            r["distinct_texts"] = len(set(texts))
            res[name], outs[name] = r, got
            print(name, r, file=sys.stderr, flush=True)
        ids = sorted(outs[name])
        plain = np.array([outs[name.replace("cache 60 s", "no cache")][i] for i in ids])
        cached = np.array([outs[name][i] for i in ids])
        res[name]["max_abs_diff_to_uncached"] = float(np.abs(plain - cached).max())
    lines = [f"# Embedding cache: {n} timed jobs of one sentence (8-64 words) after {n // 2} warm-up texts, "
             "all-MiniLM-L6-v2, through Redis, "
             f"{b.threads} compute thread(s), {b.machine()['cpu']}", "",
             "| jobs | sentences/s | worker CPU ms/sentence | distinct texts | cache hits / misses | "
             "max abs diff to uncached |", "| --- | --- | --- | --- | --- | --- |"]
    for name, r in res.items():
        hm = f"{r['cache_hits']:.0f} / {r['cache_misses']:.0f}" if "cache_hits" in r else "-"
        diff = f"{r['max_abs_diff_to_uncached']:.1e}" if "max_abs_diff_to_uncached" in r else "-"
        lines.append(f"| {name} | {r['sentences_per_s']:.1f} | {r['cpu_ms_per_sentence']:.2f} | "
                     f"{r['distinct_texts']} | {hm} | {diff} |")
    lines += ["", f"Worker: {embed_bench.backend_line(b)}. Without the cache, repeats within one batch are "
              "computed once anyway (in-batch dedup); the cache adds repeats across batches and workers, "
              "at a Redis read per job and a write per computed row."]
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "embed_cache.json"), "w") as f:
        json.dump({"machine": b.machine(), "embed_cache": res}, f, indent=1)
    with open(os.path.join(out_dir, "embed_cache.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
