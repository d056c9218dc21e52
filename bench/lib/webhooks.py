"""The webhook benchmark: deliveries per second to a receiver that answers at
once, and the latency of webhooks to that receiver alone and while other
receivers hang or answer 503 with a long Retry-After. Jobs go through the
worker as users send them (a one-row mlp with a callback); each webhook's
latency runs from the job's XADD to its arrival at the receiver."""
import json
import os
import signal
import subprocess
import sys
import threading
import time

import msgpack
import numpy as np

LIB = os.path.dirname(os.path.abspath(__file__))
JOBS = "gpuq:{default}:jobs"


class Receivers:
    def __init__(self, n_hang, n_busy):
        self.p = subprocess.Popen([sys.executable, os.path.join(LIB, "receiver.py"), str(n_hang), str(n_busy)],
                                  stdout=subprocess.PIPE, text=True)
        self.ports = json.loads(self.p.stdout.readline())
        self.url = f"http://127.0.0.1:{self.ports['ok'][0]}/hook"
        self.got = {}
        threading.Thread(target=self.read, daemon=True).start()

    def read(self):
        for line in self.p.stdout:
            hook_id, t = line.split()
            self.got[hook_id] = float(t)

    def wait(self, n, timeout):
        deadline = time.time() + timeout
        while len(self.got) < n and time.time() < deadline:
            time.sleep(0.005)
        if len(self.got) < n:
            raise RuntimeError(f"only {len(self.got)} of {n} webhooks arrived")

    def close(self):
        self.p.kill()
        self.p.wait()


def job(b, i, url, jid):
    return msgpack.packb({"op": "mlp", "model": "m", "id": jid, "callback": url, "result_ttl": 0,
                          "inputs": {"x": {"dtype": "f32", "shape": [1, 256],
                                           "data": b.x[i % len(b.x)].tobytes()}}})


def throughput(b, n):
    """n webhooks owed before the worker starts: first to last arrival."""
    b.r.flushall()
    rx = Receivers(0, 0)
    pipe = b.r.pipeline(transaction=False)
    for i in range(n):
        pipe.xadd(JOBS, {"job": job(b, i, rx.url, f"t{i}")})
    pipe.execute()
    w = b.worker("--webhook-allow", "127.0.0.0/8")
    try:
        rx.wait(n, 600)
    finally:
        w.send_signal(signal.SIGTERM)
        w.wait()
        rx.close()
    t = sorted(rx.got.values())
    return {"webhooks": n, "per_s": (n - 1) / (t[-1] - t[0])}


def latency(b, rate, secs, n_hang, n_busy, per_bad):
    """Webhooks to the healthy receiver at a steady rate, after each bad
    receiver was sent per_bad webhooks; latency from XADD to arrival."""
    b.r.flushall()
    rx = Receivers(n_hang, n_busy)
    w = b.worker("--webhook-allow", "127.0.0.0/8")
    try:
        bad = rx.ports.get("hang", []) + rx.ports.get("busy", [])
        for k, port in enumerate(bad):
            for i in range(per_bad):
                b.r.xadd(JOBS, {"job": job(b, i, f"http://127.0.0.1:{port}/hook", f"bad{k}-{i}")})
        time.sleep(1.0)     # the bad receivers' first attempts are under way, or over
        sent, n = {}, int(rate * secs)
        t0 = time.time()
        for i in range(n):
            delay = t0 + i / rate - time.time()
            if delay > 0:
                time.sleep(delay)
            sent[f"l{i}"] = time.time()
            b.r.xadd(JOBS, {"job": job(b, i, rx.url, f"l{i}")})
        rx.wait(n, 60)
    finally:
        w.send_signal(signal.SIGTERM)
        w.wait()
        rx.close()
    lat = np.array([(rx.got[k] - t) * 1000 for k, t in sent.items()])
    return {"rate": rate, "webhooks": n, "hanging": n_hang, "busy_503": n_busy, "per_bad_receiver": per_bad,
            "p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99)),
            "max_ms": float(lat.max())}


def run(b, out_dir):
    res = {"machine": b.machine(), "throughput": throughput(b, b.a.webhooks)}
    b.log("webhooks", res["throughput"])
    res["latency"] = [latency(b, 200, 5, 0, 0, 0), latency(b, 200, 5, 32, 32, 16)]
    for r in res["latency"]:
        b.log("latency", r)
    os.makedirs(out_dir, exist_ok=True)
    json.dump(res, open(os.path.join(out_dir, "webhooks.json"), "w"), indent=1)
    m, t = res["machine"], res["throughput"]
    lines = ["# gpuq webhook benchmark", "",
             f"Measured {m['date']} on {m['cpu']}, {m['cores']} cores; Redis {m['redis']}, {m['gpuq']}. "
             "The worker, Redis and the receivers (one asyncio process) share the host; every receiver "
             "listens on 127.0.0.1. Jobs are one-row mlps with a `callback`, sent as users send them.", "",
             f"**Throughput**: {t['webhooks']:,} webhooks owed, delivered to a receiver that answers at once at "
             f"**{t['per_s']:,.0f}/s** (first to last arrival).", "",
             "**Latency** of webhooks to that receiver at 200/s for 5 s, from the job's XADD to the "
             "webhook's arrival:", "",
             "| other receivers | p50 ms | p99 ms | max ms |", "| --- | --- | --- | --- |"]
    for r in res["latency"]:
        others = "none" if not r["hanging"] + r["busy_503"] else \
            (f"{r['hanging']} that never answer and {r['busy_503']} that answer 503, Retry-After: 3600; "
             f"{r['per_bad_receiver']} webhooks each")
        lines.append(f"| {others} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['max_ms']:.2f} |")
    open(os.path.join(out_dir, "webhooks.md"), "w").write("\n".join(lines) + "\n")
    return "\n".join(lines)
