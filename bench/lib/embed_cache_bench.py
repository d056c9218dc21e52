"""The embedding cache's benchmark: N jobs of one sentence each through
Redis on all-MiniLM-L6-v2, with every text distinct and with half of them
repeating an earlier one (drawn at random among the texts sent before),
each drained by a gpuq worker without the cache and with --embed-cache-ttl;
sentences/s, worker CPU per sentence, the cache's hits and misses as its
metrics count them, and whether every cached result equals the computed
one. Same jobs for each worker, one run."""
import os
import re
import sys
import urllib.request

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import embed_bench  # noqa: E402  (sentences; puts tests/ref on the path)
import pyenv  # noqa: E402

JOBS = embed_bench.JOBS


def texts_for(n, repeat, seed=5):
    """n texts, a fraction `repeat` of them repeating an earlier one."""
    fresh = embed_bench.sentences(n, seed=seed)
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        out.append(out[rng.integers(len(out))] if out and rng.random() < repeat else fresh[i])
    return out


def metric(port, name):
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    got = re.search(r"^" + re.escape(name) + r" (\S+)$", body, re.M)
    return float(got.group(1)) if got else 0.0


def run(b, n, out_dir):
    import json

    from bench import free_port
    folder = pyenv.model_dir()
    reply = "gpuq:{default}:reply:embed"
    res, outs = {}, {}
    for repeat in (0.0, 0.5):
        texts = texts_for(n, repeat)
        for cache in (False, True):
            name = f"{int(repeat * 100)}% repeats, {'cache 60 s' if cache else 'no cache'}"
            port = free_port()
            extra = ["--embed-cache-ttl", "60", "--metrics-addr", f"127.0.0.1:{port}"] if cache else []
            r, got = embed_bench.drain(b, texts, lambda: b.worker("--model", f"t={folder}", *extra), reply)
            if cache:
                r["cache_hits"] = metric(port, 'gpuq_cache_rows_total{result="hit"}')
                r["cache_misses"] = metric(port, 'gpuq_cache_rows_total{result="miss"}')
            r["distinct_texts"] = len(set(texts))
            res[name], outs[name] = r, got
            print(name, r, file=sys.stderr, flush=True)
        ids = sorted(outs[name])
        plain = np.array([outs[name.replace("cache 60 s", "no cache")][i][0] for i in ids])
        cached = np.array([outs[name][i][0] for i in ids])
        res[name]["max_abs_diff_to_uncached"] = float(np.abs(plain - cached).max())
    lines = [f"# Embedding cache: {n} jobs of one sentence (8-64 words), all-MiniLM-L6-v2, through Redis, "
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
