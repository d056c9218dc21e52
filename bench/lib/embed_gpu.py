"""Step 4 of scripts/gpu-check: the embedding benchmark on one GPU. The same
sentences, one job each, through one Redis, drained by gpuq's embed on the
CUDA backend (f32, bf16) and by embed_bench.py's batching Python worker on
PyTorch on the same GPU (f32, f16, bf16). That worker runs transformers'
AutoModel, mean pooling and L2 normalization, which is what
sentence-transformers runs for all-MiniLM-L6-v2: sentence-transformers itself
imports scipy and scikit-learn (44 MB of wheels), which the bundle leaves
out. A sample also goes through a CPU worker, the reference of the accuracy
lines. One line per run and per comparison on stdout; the workers' own
output goes to files beside the model, shown when one fails.
   embed_gpu.py run GPUQ MODEL_DIR REDIS_PORT [--sentences N] [--sample N] [--peak TFLOPS]
                [--budget S] [--cpu]
   embed_gpu.py check MODEL_DIR    (the dry run: the modules import, the folder loads)
--cpu: the GPU's runs on the CPU backend and the PyTorch worker on the CPU."""
import argparse
import importlib
import json
import os
import re
import subprocess
import sys
import time
from types import SimpleNamespace

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import embed_bench  # noqa: E402

REPLY = "gpuq:{default}:reply:embed"
PEER = ("transformers' AutoModel, mean pooling and L2 normalization on PyTorch, as sentence-transformers "
        "runs this model (sentence-transformers itself needs scipy and scikit-learn, not bundled)")


def flops(cfg, tokens):
    """2 x the multiply-adds of one text of `tokens` tokens: the GEMMs over
    its tokens (QKV, attention output, feed-forward) and its attention."""
    h, inter = cfg["hidden_size"], cfg["intermediate_size"]
    return cfg["num_hidden_layers"] * (2 * tokens * h * (4 * h + 2 * inter) + 4 * tokens * tokens * h)


def started(p, log, ready):
    """Waits up to two minutes for ready(); the log's tail when it fails."""
    deadline = time.time() + 120
    while not ready():
        if p.poll() is not None or time.time() > deadline:
            p.kill()
            with open(log) as f:
                tail = f.read()[-2000:]
            raise RuntimeError(f"the worker did not start:\n{tail}")
        time.sleep(0.05)
    return p


def gpuq_worker(a, backend, precision, notes):
    """start() for a gpuq worker; notes gets its log's lines on where ops run."""
    log = os.path.join(a.logs, f"gpuq-{backend}-{precision}.log")

    def start():
        with open(log, "w") as f:
            p = subprocess.Popen([a.gpuq, "worker", "--redis", f"redis://127.0.0.1:{a.port}", "--backend", backend,
                                  "--precision", precision, "--cpu-threads", str(a.threads), "--model", f"t={a.model}"],
                                 stderr=f)
        started(p, log, lambda: "ready" in open(log).read())
        notes[:] = [f"--precision {precision}"] + [
            re.sub(r"^gpuq \S+ worker \S+: ", "", ln.split(None, 2)[-1].strip()) for ln in open(log)
            if any(k in ln for k in ("backend", "precision", "start-up check", "disagrees"))]
        return p
    return start


def peer_worker(a, device, dtype, notes):
    """start() for embed_bench.py's PyTorch worker; notes gets its versions."""
    log = os.path.join(a.logs, f"torch-{device}-{dtype}.log")

    def start():
        with open(log, "w") as f:
            p = subprocess.Popen([sys.executable, embed_bench.__file__, "worker", "torch", str(a.port), a.model,
                                  str(a.threads), str(a.peer_batch), device, dtype],
                                 stdout=subprocess.PIPE, stderr=f, text=True)
        line = p.stdout.readline()
        started(p, log, lambda: line.startswith("ready"))
        notes[:] = [line[len("ready"):].strip()]
        return p
    return start


def compare(outs, x, y, ids):
    ya = np.array([outs[x][i][0] for i in ids], np.float64)
    yb = np.array([outs[y][i][0] for i in ids], np.float64)
    cos = (ya * yb).sum(1) / np.maximum(np.linalg.norm(ya, axis=1) * np.linalg.norm(yb, axis=1), 1e-30)
    differ = sum(outs[x][i][1] != outs[y][i][1] for i in ids)
    print(f"embed accuracy, {x} against {y} ({len(ids)} texts): min cosine {cos.min():.6f} "
          f"(1 - cos {1 - cos.min():.1e}), "
          f"max abs diff {np.abs(ya - yb).max():.2e}, token counts "
          f"{'equal' if not differ else f'DIFFER in {differ} texts'}", flush=True)


def speedup(res, fast, slow):
    if fast in res and slow in res:
        r = res[fast]["sentences_per_s"] / res[slow]["sentences_per_s"]
        print(f"embed speed-up, {fast} over {slow}: {r:.2f}x sentences/s (goal >= 2x: "
              f"{'met' if r >= 2 else 'NOT met'})", flush=True)


def run(a):
    import redis
    with open(os.path.join(a.model, "config.json")) as f:
        cfg = json.load(f)
    texts = embed_bench.sentences(a.sentences)
    b = SimpleNamespace(r=redis.Redis(port=a.port))
    backend, device = ("cpu", "cpu") if a.cpu else ("cuda", "cuda")
    ref = "gpuq cpu f32 (reference)"
    runs = [(ref, texts[:a.sample], lambda n: gpuq_worker(a, "cpu", "f32", n))]
    runs += [(f"gpuq {backend} {p}", texts, lambda n, p=p: gpuq_worker(a, backend, p, n)) for p in ("f32", "bf16")]
    runs += [(f"peer torch {device} {d}", texts, lambda n, d=d: peer_worker(a, device, d, n))
             for d in ("f32", "f16", "bf16")]
    print(f"embed: {len(texts)} sentences of 8-64 words, one job each, through Redis; all-MiniLM-L6-v2's "
          f"tokenizer and shape (hidden {cfg['hidden_size']}, {cfg['num_hidden_layers']} layers, "
          f"{cfg['num_attention_heads']} heads, intermediate {cfg['intermediate_size']}), random weights; "
          f"the reference on {len(runs[0][1])} of them", flush=True)
    print(f"embed peer: {PEER}; batches of up to {a.peer_batch} jobs padded to their longest text", flush=True)
    print(f"embed bf16 peak: {f'{a.peak:.1f} TFLOP/s (bench_gemm)' if a.peak else 'none (no GPU)'}; "
          f"TFLOP/s below count the real tokens' FLOPs, not padding", flush=True)
    res, outs, t_end = {}, {}, time.time() + a.budget
    for i, (name, tx, make) in enumerate(runs):
        notes = []
        timeout = max(10.0, min(a.timeout, (t_end - time.time()) / (len(runs) - i)))
        try:
            res[name], outs[name] = embed_bench.drain(b, tx, make(notes), REPLY, timeout)
        except RuntimeError as e:
            print(f"embed {name}: FAILED: {e}", flush=True)
            continue
        r = res[name]
        seconds = len(tx) / r["sentences_per_s"]
        tokens = sum(n for _, n in outs[name].values())
        tflops = sum(flops(cfg, n) for _, n in outs[name].values()) / seconds / 1e12
        peak = f" = {100 * tflops / a.peak:.1f}% of the bf16 peak" if a.peak else ""
        print(f"embed {name}: {r['sentences_per_s']:,.1f} sentences/s, {tokens / seconds:,.0f} tokens/s, "
              f"{r['cpu_ms_per_sentence']:.3f} ms worker CPU per sentence, {tflops:.2f} TFLOP/s{peak} "
              f"[{'; '.join(notes)}]", flush=True)
        if backend == "cuda" and name.startswith("gpuq cuda") and any(
                "CPU backend" in n and "embed" in n for n in notes):
            print(f"embed {name}: WARNING: embed ran on the CPU backend, not the GPU", flush=True)
    if ref in outs:
        sample = sorted(outs[ref])
        for name in outs:
            if name != ref:
                compare(outs, name, ref, sample)
    for p in ("f32", "bf16"):
        x, y = f"gpuq {backend} {p}", f"peer torch {device} {p}"
        if x in outs and y in outs:
            compare(outs, x, y, sorted(outs[x]))
    speedup(res, f"gpuq {backend} f32", f"peer torch {device} f32")
    half = [n for n in (f"peer torch {device} f16", f"peer torch {device} bf16") if n in res]
    if half:
        speedup(res, f"gpuq {backend} bf16", max(half, key=lambda n: res[n]["sentences_per_s"]))
    return 0 if len(res) == len(runs) else 1


def check(folder):
    """The dry run: the PyTorch worker's modules import (under a Python
    other than the image's 3.12, the bundle's compiled wheels cannot), the
    tokenizer reads the folder, and with torch here the model runs."""
    embed_bench.peer_path()
    got, other, failed = [], [], []
    for mod in ("tokenizers", "safetensors", "yaml", "regex", "huggingface_hub", "transformers"):
        try:
            importlib.import_module(mod)
            got.append(mod)
        except ImportError as e:
            bundled = os.environ.get("GPUQ_PEER_PYTHON")    # 3.12 wheels
            (other if bundled and sys.version_info[:2] != (3, 12) else failed).append(f"{mod} ({e})")
    print("  step 4: imported", " ".join(got))
    if other:
        print(f"  step 4: not importable under Python {sys.version.split()[0]}, the wheels are 3.12's:",
              ", ".join(other))
    if failed:
        print("  step 4: MISSING:", ", ".join(failed))
        return 1
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(os.path.join(folder, "tokenizer.json"))
    n = sum(tok.encode("The weather is lovely today.").attention_mask)
    print(f"  step 4: {folder} written; its tokenizer gives {n} tokens for 'The weather is lovely today.'")
    try:
        import torch  # noqa: F401
    except ImportError:
        print("  step 4: no torch here: the PyTorch worker's model is not loaded (the GPU image has torch)")
        return 0
    embed, about = embed_bench.torch_embedder(folder, "cpu", "f32", 2)
    y, tokens = embed(["The weather is lovely today.", "It's so sunny outside!"])
    print(f"  step 4: the PyTorch worker ran ({about}): y {list(y.shape)}, tokens {tokens.tolist()}")
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=["run", "check"])
    p.add_argument("gpuq", nargs="?", help="run: the gpuq program")
    p.add_argument("model", help="the model folder")
    p.add_argument("port", type=int, nargs="?")
    p.add_argument("--sentences", type=int, default=20000)
    p.add_argument("--sample", type=int, default=1000)
    p.add_argument("--peak", type=float)
    p.add_argument("--budget", type=float, default=500, help="seconds for all the drains")
    p.add_argument("--timeout", type=float, default=120, help="seconds for one drain at most")
    p.add_argument("--peer-batch", type=int, default=256)
    p.add_argument("--cpu", action="store_true")
    a = p.parse_args()
    if a.what == "check":
        return check(a.model)
    a.logs = os.path.dirname(os.path.abspath(a.model))
    a.threads = max(1, (os.cpu_count() or 2) - 1)    # Redis shares the host: leave it a core
    return run(a)


if __name__ == "__main__":
    sys.exit(main())
