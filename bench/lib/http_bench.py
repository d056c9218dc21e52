"""`scripts/bench --http SECONDS`: requests/s and latency p50/p99 of the same
embedding requests (one short sentence each, on a random tiny BERT encoder
from scripts/make-model) sent by C concurrent callers through `gpuq http`
(POST /v1/embeddings, keep-alive connections) and through the Python client
straight to Redis (Client.embed), one after the other against one worker on
one throwaway Redis. What the front door costs over a client that speaks the
protocol itself."""
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
GPUQ = os.path.join(ROOT, "build", "gpuq")
sys.path.insert(0, os.path.join(ROOT, "clients", "python"))
TEXT = "A man is eating food."


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(cond, timeout=20):
    end = time.time() + timeout
    while time.time() < end:
        if cond():
            return
        time.sleep(0.05)
    raise RuntimeError("timed out")


def drive(call, callers, seconds):
    """callers threads calling call() for seconds: (requests/s, p50 ms, p99 ms, errors)."""
    lat, errors, stop = [], [0], time.time() + seconds
    lock = threading.Lock()

    def loop():
        mine = []
        state = {}
        while time.time() < stop:
            t = time.perf_counter()
            try:
                call(state)
                mine.append(time.perf_counter() - t)
            except Exception:
                with lock:
                    errors[0] += 1
        with lock:
            lat.extend(mine)

    threads = [threading.Thread(target=loop) for _ in range(callers)]
    t0 = time.time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lat.sort()
    n = len(lat)
    pick = (lambda q: lat[min(n - 1, int(q * n))] * 1000) if n else (lambda q: float("nan"))
    return n / (time.time() - t0), pick(0.5), pick(0.99), errors[0]


def run(seconds=10, callers=16, out=None):
    tmp = tempfile.mkdtemp(prefix="gpuq-http-bench-")
    rport, hport = free_port(), free_port()
    procs = []
    try:
        procs.append(subprocess.Popen(["redis-server", "--port", str(rport), "--save", "", "--appendonly", "no"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        folder = os.path.join(tmp, "tiny")
        subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "make-model"), "--bert", folder, "--pooling",
                        "mean", "--normalize"], check=True, capture_output=True)
        url = f"redis://127.0.0.1:{rport}"
        time.sleep(0.3)
        procs.append(subprocess.Popen([GPUQ, "worker", "--redis", url, "--backend", "cpu", "--model", f"m={folder}"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        procs.append(subprocess.Popen([GPUQ, "http", "--redis", url, "--listen", f"127.0.0.1:{hport}",
                                       "--max-concurrency", "100000"], stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL))
        body = json.dumps({"model": "m", "input": TEXT})

        def via_http(state):
            c = state.get("c") or state.setdefault("c", http.client.HTTPConnection("127.0.0.1", hport, timeout=30))
            c.request("POST", "/v1/embeddings", body, {"Content-Type": "application/json"})
            r = c.getresponse()
            r.read()
            if r.status != 200:
                raise RuntimeError(r.status)

        def ready():
            try:
                via_http({})
                return True
            except Exception:
                return False

        wait_until(ready)
        from gpuq_client import Client
        client = Client(url)

        def via_client(state):
            client.embed([TEXT], "m", timeout=30)

        rows = []
        for name, call in (("gpuq http (POST /v1/embeddings)", via_http),
                           ("Python client to Redis (Client.embed)", via_client)):
            drive(call, callers, 1.0)   # warm
            rps, p50, p99, err = drive(call, callers, seconds)
            rows.append({"path": name, "requests_per_s": round(rps, 1), "p50_ms": round(p50, 2),
                         "p99_ms": round(p99, 2), "errors": err})
        md = [f"Embedding requests, one sentence each, {callers} concurrent callers, {seconds:g} s each, "
              "one worker (tiny random encoder, CPU), one Redis:", "",
              "| path | requests/s | p50 ms | p99 ms | errors |", "| --- | --- | --- | --- | --- |"]
        md += [f"| {r['path']} | {r['requests_per_s']} | {r['p50_ms']} | {r['p99_ms']} | {r['errors']} |" for r in rows]
        text = "\n".join(md) + "\n"
        if out:
            os.makedirs(out, exist_ok=True)
            with open(os.path.join(out, "http.md"), "w") as f:
                f.write(text)
            with open(os.path.join(out, "http.json"), "w") as f:
                json.dump(rows, f, indent=1)
        return text
    finally:
        for p in reversed(procs):
            p.terminate()
            p.wait()


if __name__ == "__main__":
    print(run(float(sys.argv[1]) if len(sys.argv) > 1 else 10))
