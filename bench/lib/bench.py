"""gpuq benchmarks, side by side in one run on one Redis: drain throughput
against RQ, Celery and a batching Python Streams worker (and the compute-only
ceiling); latency under open-loop load; worker memory under a backlog; and
the Redis limit. Writes results.md, results.json and PNG plots."""
import argparse
import importlib
import json
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time

import msgpack
import numpy as np
import redis

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
LIB = os.path.dirname(os.path.abspath(__file__))
GPUQ = os.path.join(ROOT, "build", "gpuq")
JOBS = "gpuq:{default}:jobs"


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def cpu_seconds(pid):
    """user + sys CPU seconds of a live process (from /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Bench:
    def __init__(self, args):
        self.a = args
        self.tmp = tempfile.mkdtemp(prefix="gpuq-bench-")
        self.port = free_port()
        # --tls: the same Redis on a TLS port too, its certificate made here
        self.tls_port, tls = None, []
        if args.tls:
            self.tls_port, self.cert = free_port(), os.path.join(self.tmp, "redis.pem")
            key = os.path.join(self.tmp, "redis.key")
            subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                            "-nodes", "-keyout", key, "-out", self.cert, "-days", "2", "-subj", "/CN=127.0.0.1",
                            "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
            tls = ["--tls-port", str(self.tls_port), "--tls-cert-file", self.cert, "--tls-key-file", key,
                   "--tls-ca-cert-file", self.cert, "--tls-auth-clients", "no"]
        self.redis_proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", self.tmp, *tls], stdout=subprocess.DEVNULL)
        self.r = redis.Redis(port=self.port)
        for _ in range(100):
            try:
                self.r.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        self.model = os.path.join(self.tmp, "mlp.safetensors")
        subprocess.check_call([os.path.join(ROOT, "scripts", "make-model"), self.model, "256", "1024", "256"])
        self.x = np.random.default_rng(0).standard_normal((args.jobs, 256)).astype(np.float32)
        np.save(os.path.join(self.tmp, "x.npy"), self.x[:1000])
        # Redis shares this host: gpuq and the Python worker both leave it a core
        self.threads = max(1, (os.cpu_count() or 2) - 1)
        self.env = dict(os.environ, BENCH_MODEL=self.model, BENCH_REDIS=f"redis://127.0.0.1:{self.port}/0",
                        PYTHONPATH=LIB, OPENBLAS_NUM_THREADS=str(self.threads))
        self.out = {}

    def close(self):
        self.redis_proc.kill()

    log = staticmethod(log)

    # ---- helpers ----

    def gpuq_jobs(self, n, reply=None, result_ttl=None):
        pipe = self.r.pipeline(transaction=False)
        for i in range(n):
            job = {"op": "mlp", "model": "m", "inputs": {"x": {"dtype": "f32", "shape": [1, 256],
                                                                "data": self.x[i % len(self.x)].tobytes()}}}
            if reply:
                job["reply_to"] = reply
            if result_ttl is not None:
                job["result_ttl"] = result_ttl
            pipe.xadd(JOBS, {"job": msgpack.packb(job)})
            if i % 5000 == 4999:
                pipe.execute()
        pipe.execute()

    def worker(self, *extra, binary=GPUQ, env=None, url=None):
        logf = open(os.path.join(self.tmp, "worker.log"), "w")
        p = subprocess.Popen([binary, "worker", "--redis", url or f"redis://127.0.0.1:{self.port}", "--backend",
                              self.a.backend, "--model", f"m={self.model}", "--cpu-threads",
                              str(self.threads), *extra], stderr=logf, env=env)
        for _ in range(400):
            if "ready" in open(logf.name).read():
                break
            time.sleep(0.01)
        return p

    def time_list(self, reply, n, timeout=600):
        """First to last result on a reply list, by polling its length."""
        t_first, deadline = None, time.time() + timeout
        while time.time() < deadline:
            ln = self.r.llen(reply)
            if ln and t_first is None:
                t_first = time.time()
            if ln >= n:
                return (n - 1) / (time.time() - t_first)
            time.sleep(0.001)
        raise RuntimeError(f"only {self.r.llen(reply)} of {n} results")

    # ---- 0. two gpuq builds, alternating ----

    def compare(self):
        """Drains with this build and another (--compare BIN), alternating,
        --rounds times each: the same jobs, the same Redis, one after the other."""
        runs = {"this": [], "other": []}
        for i in range(self.a.rounds):
            for name, binary in (("this", GPUQ), ("other", self.a.compare)):
                r = self.drain_one(self.a.jobs, binary)
                runs[name].append(r)
                log(f"round {i + 1} {name}: {r['jobs_per_s']:,.0f} jobs/s, {r['cpu_us_per_job']:.2f} us CPU/job, "
                    f"Redis {r['redis_cpu_us_per_job']:.2f} us CPU/job")
        lone = {"this": [], "other": []}
        for i in range(self.a.rounds):
            for name, binary in (("this", GPUQ), ("other", self.a.compare)):
                lone[name].append(self.lone_one(binary))
        rtt = self.round_trips()
        for name, got in lone.items():
            ps, cs = [p for p, _ in got], [c for _, c in got]
            print(f"{name}: lone job, closed loop, default flags: p50 {np.median(ps):.3f} ms "
                  f"(runs {min(ps):.3f}-{max(ps):.3f}); the 3 Redis round trips it needs: {rtt:.3f} ms, "
                  f"ratio {np.median(ps) / rtt:.1f}; the job's own compute (timing.compute_us) p50 "
                  f"{np.median(cs):.3f} ms, {np.median(cs) / rtt:.1f} of those round trips")
        for name, rs in runs.items():
            rates = [r["jobs_per_s"] for r in rs]
            cpus = [r["cpu_us_per_job"] for r in rs]
            rcpus = [r["redis_cpu_us_per_job"] for r in rs]
            print(f"{name}: {np.mean(rates):,.0f} jobs/s (runs {min(rates):,.0f}-{max(rates):,.0f}), "
                  f"worker {np.mean(cpus):.2f} us CPU/job (runs {min(cpus):.2f}-{max(cpus):.2f}), "
                  f"Redis {np.mean(rcpus):.2f} us CPU/job (runs {min(rcpus):.2f}-{max(rcpus):.2f})")

    def tls(self):
        """Drains over TLS and over TCP, alternating --rounds times: the same
        jobs on the same Redis, the worker on its TLS port or its plain one."""
        ways = {"tcp": (None, ()), "tls": (f"rediss://127.0.0.1:{self.tls_port}", ("--redis-ca", self.cert))}
        runs = {name: [] for name in ways}
        for i in range(self.a.rounds):
            for name, (url, extra) in ways.items():
                r = self.drain_one(self.a.jobs, url=url, extra=extra)
                runs[name].append(r)
                log(f"round {i + 1} {name}: {r['jobs_per_s']:,.0f} jobs/s, {r['cpu_us_per_job']:.2f} us CPU/job, "
                    f"Redis {r['redis_cpu_us_per_job']:.2f} us CPU/job")
        for name, rs in runs.items():
            rates, cpus = [r["jobs_per_s"] for r in rs], [r["cpu_us_per_job"] for r in rs]
            rcpus = [r["redis_cpu_us_per_job"] for r in rs]
            print(f"{name}: {self.a.jobs} one-row mlp jobs: {np.mean(rates):,.0f} jobs/s (runs {min(rates):,.0f}-"
                  f"{max(rates):,.0f}), worker {np.mean(cpus):.2f} us CPU/job (runs {min(cpus):.2f}-{max(cpus):.2f}), "
                  f"Redis {np.mean(rcpus):.2f} us CPU/job (runs {min(rcpus):.2f}-{max(rcpus):.2f})")

    def lone_one(self, binary=GPUQ, n=400):
        """p50 ms of one one-row mlp job at a time, enqueue to result on a
        reply list, with the worker's default flags; and p50 ms of the
        compute the worker reports in each result."""
        reply = "gpuq:{default}:reply:lone"
        self.r.flushall()
        w = self.worker(binary=binary)
        job = {"op": "mlp", "model": "m", "reply_to": reply,
               "inputs": {"x": {"dtype": "f32", "shape": [1, 256], "data": self.x[0].tobytes()}}}
        packed = msgpack.packb(job)
        times, compute = [], []
        for i in range(n + 20):
            t = time.perf_counter()
            self.r.xadd(JOBS, {"job": packed})
            got = self.r.blpop([reply], timeout=10)
            if i >= 20:     # warm
                times.append((time.perf_counter() - t) * 1e3)
                compute.append(msgpack.unpackb(got[1])["timing"]["compute_us"] / 1e3)
        w.send_signal(signal.SIGTERM)
        w.wait()
        return float(np.median(times)), float(np.median(compute))

    def round_trips(self, n=2000):
        """ms of the three Redis round trips a lone job needs (enqueue, the
        worker's read, its write), measured as three PINGs from here."""
        times = []
        for _ in range(n):
            t = time.perf_counter()
            for _ in range(3):
                self.r.ping()
            times.append((time.perf_counter() - t) * 1e3)
        return float(np.median(times))

    # ---- 1. drain throughput ----

    def drain_one(self, n, binary=GPUQ, url=None, extra=()):
        """One drain of n pre-enqueued jobs by a gpuq worker: jobs/s, and the
        worker's CPU seconds (user + sys) per job, steadier on a shared host."""
        reply = "gpuq:{default}:reply:drain"
        self.r.flushall()
        self.gpuq_jobs(n, reply)
        w = self.worker(*extra, binary=binary, url=url)
        cpu0, rcpu0 = cpu_seconds(w.pid), self.redis_cpu()
        rate = self.time_list(reply, n)
        cpu, rcpu = cpu_seconds(w.pid) - cpu0, self.redis_cpu() - rcpu0
        w.send_signal(signal.SIGTERM)
        w.wait()
        return {"jobs": n, "jobs_per_s": rate, "cpu_us_per_job": cpu / n * 1e6,
                "redis_cpu_us_per_job": rcpu / n * 1e6}

    def redis_cpu(self):
        i = self.r.info("cpu")
        return i["used_cpu_user"] + i["used_cpu_sys"]

    def drain(self):
        n, res = self.a.jobs, {}
        reply = "gpuq:{default}:reply:drain"
        res["gpuq"] = self.drain_one(n)
        log("gpuq", res["gpuq"])
        # bf16 GEMMs (AMX or AVX-512 BF16 where the host has them): the mlp's
        # FLOPs alone take about 5 us of a job's CPU in f32
        res[BF16] = self.drain_one(n, extra=("--precision", "bf16"))
        log(BF16, res[BF16])

        self.r.flushall()
        self.gpuq_jobs(n, reply)
        p = subprocess.Popen([sys.executable, os.path.join(LIB, "pyworker.py"), str(self.port), self.model],
                             env=self.env)
        time.sleep(0.5)     # its imports are not the drain's cost
        cpu0 = cpu_seconds(p.pid)
        rate = self.time_list(reply, n)
        res["python-streams-numpy"] = {"jobs": n, "jobs_per_s": rate,
                                       "cpu_us_per_job": (cpu_seconds(p.pid) - cpu0) / n * 1e6}
        p.kill()
        p.wait()
        log("python", res["python-streams-numpy"])

        if not self.a.no_peers:
            res["rq"] = self.rq()
            log("rq", res["rq"])
            res["celery"] = self.celery()
            log("celery", res["celery"])

        out = subprocess.check_output([GPUQ, "bench-compute", "--model", self.model, "--jobs", str(n),
                                       "--backend", self.a.backend], text=True)
        res["compute-only ceiling"] = {"jobs": n, "jobs_per_s": float(re.search(r"jobs_per_s=(\d+)", out).group(1))}
        log("ceiling", res["compute-only ceiling"])
        self.out["drain"] = res

    def rq(self):
        from rq import Queue
        from rq.job import Job
        n = self.a.peer_jobs
        self.r.flushall()
        rconn = redis.Redis(port=self.port)
        q = Queue("bench", connection=rconn)
        import peer_tasks
        specs = [Queue.prepare_data(peer_tasks.mlp, args=(self.x[i].tobytes(), 1), result_ttl=3600)
                 for i in range(n)]
        jobs = []
        for i in range(0, n, 1000):
            jobs += q.enqueue_many(specs[i:i + 1000])
        subprocess.check_call([sys.executable, "-m", "rq.cli", "worker", "--burst", "--worker-class",
                               "rq.worker.SimpleWorker", "--url", f"redis://127.0.0.1:{self.port}", "-q", "bench"],
                              env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        first, last = Job.fetch(jobs[0].id, connection=rconn), Job.fetch(jobs[-1].id, connection=rconn)
        assert last.get_status() == "finished", last.get_status()
        return {"jobs": n, "jobs_per_s": (n - 1) / (last.ended_at - first.ended_at).total_seconds()}

    def celery(self):
        n = self.a.peer_jobs
        self.r.flushall()
        sys.path.insert(0, LIB)
        os.environ.update(BENCH_REDIS=self.env["BENCH_REDIS"], BENCH_MODEL=self.model)
        from celery_app import mlp
        import base64
        ids = [mlp.apply_async((base64.b64encode(self.x[i].tobytes()).decode(), 1)).id for i in range(n)]
        p = subprocess.Popen([sys.executable, "-m", "celery", "-A", "celery_app", "worker", "--pool=solo",
                              "--concurrency=1", "--loglevel=WARNING", "--without-gossip", "--without-mingle",
                              "--without-heartbeat"], env=self.env, cwd=LIB,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        keys = [f"celery-task-meta-{ids[0]}", f"celery-task-meta-{ids[-1]}"]
        deadline = time.time() + 900
        while not self.r.exists(keys[1]) and time.time() < deadline:
            time.sleep(0.05)
        p.kill()
        p.wait()
        done = [json.loads(self.r.get(k))["date_done"] for k in keys]
        if isinstance(done[0], str):
            from datetime import datetime
            done = [datetime.fromisoformat(d) for d in done]
        return {"jobs": n, "jobs_per_s": (n - 1) / (done[1] - done[0]).total_seconds()}

    # ---- 2. latency under open-loop load ----

    def latency(self):
        cap = self.out["drain"]["gpuq"]["jobs_per_s"]
        runs = []
        plan = [(f, 2000) for f in (0.1, 0.3, 0.5, 0.7, 0.9)] + [(0.5, d) for d in (500, 8000)]
        for frac, delay in plan:
            self.r.flushall()
            w = self.worker("--max-delay-us", str(delay))
            out = subprocess.check_output([sys.executable, os.path.join(LIB, "loadgen.py"), str(self.port),
                                           str(frac * cap), str(self.a.load_secs),
                                           os.path.join(self.tmp, "x.npy")], text=True)
            w.send_signal(signal.SIGTERM)
            w.wait()
            res = json.loads(out)
            res.update(load=frac, max_delay_us=delay)
            log(f"load {frac:.0%} delay {delay}: p50 {res['p50']:.2f} p99 {res['p99']:.2f} p99.9 {res['p999']:.2f} ms")
            runs.append(res)
        self.out["latency"] = runs

    # ---- 3. memory under a backlog ----

    def memory(self):
        n = self.a.backlog
        self.r.flushall()
        log(f"enqueueing a backlog of {n} jobs")
        self.gpuq_jobs(n, result_ttl=0)
        used = self.r.info("memory")["used_memory"]
        w = self.worker()
        samples, t0 = [], time.time()
        while True:
            with open(f"/proc/{w.pid}/status") as f:
                rss = int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1)) * 1024
            groups = self.r.xinfo_groups(JOBS)
            lag = groups[0].get("lag") if groups else n
            samples.append((time.time() - t0, rss, lag))
            if lag == 0 and groups[0]["pending"] == 0:
                break
            time.sleep(0.1)
        w.send_signal(signal.SIGTERM)
        w.wait()
        rss = [s[1] for s in samples]
        self.out["memory"] = {"backlog": n, "redis_used_bytes": used, "rss_min": min(rss), "rss_max": max(rss),
                              "rss_first": rss[0], "drain_seconds": samples[-1][0], "samples": samples}
        log("memory", {k: v for k, v in self.out["memory"].items() if k != "samples"})

    # ---- 4. the Redis limit ----

    def redis_limit(self):
        payload = "x" * 1100      # about one job's msgpack
        cmds = {"XADD": ["XADD", "bench:s", "*", "job", payload], "SET": ["SET", "bench:k:__rand_int__", payload],
                "RPUSH": ["RPUSH", "bench:l", payload], "EXPIRE": ["EXPIRE", "bench:l", "3600"],
                "XACK": ["XACK", "bench:s", "g", "0-1"]}
        rates = {}
        for name, argv in cmds.items():
            self.r.flushall()
            out = subprocess.check_output(["redis-benchmark", "-p", str(self.port), "-n", "200000", "-P", "32",
                                           "-q", *argv], text=True)
            rates[name] = float(re.findall(r"([\d.]+) requests per second", out)[-1])
        # a job costs one of each (XREADGROUP is amortized over a whole batch)
        limit = 1 / sum(1 / v for v in rates.values())
        self.out["redis"] = {"ops_per_s": rates, "jobs_per_s_limit": limit}
        log("redis", self.out["redis"])

    def machine(self):
        cpu = re.search(r"model name\s*:\s*(.*)", open("/proc/cpuinfo").read())
        mem = int(re.search(r"MemTotal:\s+(\d+)", open("/proc/meminfo").read()).group(1)) // 1024 // 1024
        return {"cpu": cpu.group(1) if cpu else platform.processor(), "cores": os.cpu_count(), "mem_gib": mem,
                "kernel": platform.release(), "backend": self.a.backend, "blas_threads": self.threads,
                "redis": self.r.info("server")["redis_version"],
                "gpuq": subprocess.check_output([GPUQ, "version"], text=True).strip(),
                "numpy": np.__version__, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


BF16 = "gpuq, --precision bf16"


def report(out, d):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    os.makedirs(d, exist_ok=True)
    m, dr = out["machine"], out["drain"]
    py = dr["python-streams-numpy"]["jobs_per_s"]
    ceil = dr["compute-only ceiling"]["jobs_per_s"]
    lines = [f"# gpuq benchmarks", "",
             f"Measured {m['date']} on {m['cpu']}, {m['cores']} cores, {m['mem_gib']} GiB; "
             f"Redis {m['redis']}, {m['gpuq']}, backend {m['backend']}, numpy {m['numpy']}. "
             f"Redis shares the host, so gpuq and the Python worker compute on {m['blas_threads']} BLAS "
             "thread(s) and leave Redis a core; the compute-only ceiling uses every core. "
             "Every system ran on the same Redis and the same jobs (one-row mlp 256 → 1024 → 256, f32) "
             "in one run; ratios are what to read, absolute numbers vary by machine.", "",
             "## Drain throughput", "", "| system | jobs | jobs/s | gpuq is | worker CPU µs/job |",
             "| --- | --- | --- | --- | --- |"]
    g = dr["gpuq"]["jobs_per_s"]
    for name, v in dr.items():
        rate = v["jobs_per_s"]
        ratio = f"{g / rate:.1f}x" if name not in ("gpuq", BF16, "compute-only ceiling") else \
            (f"{g / rate:.0%} of it" if name == "compute-only ceiling" else "")
        cpu = f"{v['cpu_us_per_job']:.1f}" if "cpu_us_per_job" in v else ""
        lines.append(f"| {name} | {v['jobs']} | {v['jobs_per_s']:,.0f} | {ratio} | {cpu} |")
    lines += ["", f"gpuq drains at **{g / py:.1f}x** the batching Python worker (goal ≥ 3x) and at "
              f"**{g / ceil:.0%}** of the compute-only ceiling (goal ≥ 60%).", ""]
    if "cpu_us_per_job" in dr["gpuq"]:
        c = dr["python-streams-numpy"]["cpu_us_per_job"] / dr["gpuq"]["cpu_us_per_job"]
        lines += [f"Per job, the Python worker spends **{c:.1f}x** gpuq's CPU (user + sys of the worker "
                  "process over the drain)" + (f", and **{dr['python-streams-numpy']['cpu_us_per_job'] / dr[BF16]['cpu_us_per_job']:.1f}x** "
                  "that of gpuq with `--precision bf16` (the Python worker computes in f32)" if BF16 in dr else "")
                  + ".", ""]
    if "latency" in out:
        lines += ["## Latency under open-loop load", "",
                  "| offered load | max-delay-us | jobs/s sent | p50 ms | p99 ms | p99.9 ms | mean batch rows |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        for r in out["latency"]:
            lines.append(f"| {r['load']:.0%} | {r['max_delay_us']} | {r['achieved_send_rate']:,.0f} | {r['p50']:.2f} | "
                         f"{r['p99']:.2f} | {r['p999']:.2f} | {np.mean(r['batch_sizes']):.1f} |")
        lines.append("")
    if "memory" in out:
        mm = out["memory"]
        lines += ["## Memory under a backlog", "",
                  f"Backlog of {mm['backlog']:,} jobs ({mm['redis_used_bytes'] / 2**20:,.0f} MiB in Redis), drained in "
                  f"{mm['drain_seconds']:.1f} s: worker RSS {mm['rss_first'] / 2**20:.1f} MiB at start, "
                  f"{mm['rss_min'] / 2**20:.1f}–{mm['rss_max'] / 2**20:.1f} MiB over the drain.", ""]
    if "redis" in out:
        rr = out["redis"]
        lines += ["## The Redis limit", "",
                  "redis-benchmark (pipelined 32) on the same Redis, for the commands one job costs: " +
                  ", ".join(f"{k} {v:,.0f}/s" for k, v in rr["ops_per_s"].items()) +
                  f". One of each per job bounds a single Redis at about **{rr['jobs_per_s_limit']:,.0f} jobs/s**; "
                  f"gpuq's drain is {g / rr['jobs_per_s_limit']:.0%} of that.", ""]
    lines += ["![throughput](throughput.png)", ""]
    if "latency" in out:
        lines += ["![latency](latency.png) ![batch sizes](batch_sizes.png)", ""]
    if "memory" in out:
        lines += ["![memory](memory.png)", ""]
    open(os.path.join(d, "results.md"), "w").write("\n".join(lines))
    slim = dict(out)
    if "latency" in out:    # raw batch sizes: plotted, stored as a histogram
        slim["latency"] = [dict(r, batch_sizes=dict(zip(*[v.tolist() for v in np.unique(r["batch_sizes"],
                           return_counts=True)]))) for r in out["latency"]]
    json.dump(slim, open(os.path.join(d, "results.json"), "w"), default=str, indent=1)

    fig, ax = plt.subplots(figsize=(7, 3.5))
    names = list(dr)
    ax.barh(names, [dr[k]["jobs_per_s"] for k in names], color=["#2a7" if k == "gpuq" else "#999" for k in names])
    ax.set_xlabel("jobs/s (one-row mlp 256-1024-256)")
    ax.set_xscale("log")
    ax.set_title("Drain throughput")
    fig.tight_layout()
    fig.savefig(os.path.join(d, "throughput.png"), dpi=110)
    if "latency" in out:
        runs = [r for r in out["latency"] if r["max_delay_us"] == 2000]
        fig, ax = plt.subplots(figsize=(7, 3.5))
        for key, label in (("p50", "p50"), ("p99", "p99"), ("p999", "p99.9")):
            ax.plot([r["achieved_send_rate"] for r in runs], [r[key] for r in runs], marker="o", label=label)
        ax.set_xlabel("offered jobs/s")
        ax.set_ylabel("end-to-end latency, ms")
        ax.set_yscale("log")
        ax.legend()
        ax.set_title("Latency under open-loop load (max-delay 2 ms)")
        fig.tight_layout()
        fig.savefig(os.path.join(d, "latency.png"), dpi=110)
        fig, ax = plt.subplots(figsize=(7, 3.5))
        for r in runs:
            ax.hist(r["batch_sizes"], bins=50, histtype="step", label=f"{r['load']:.0%} load")
        ax.set_xlabel("rows in the batch a job ran in")
        ax.set_ylabel("jobs")
        ax.legend()
        ax.set_title("Batch sizes that formed")
        fig.tight_layout()
        fig.savefig(os.path.join(d, "batch_sizes.png"), dpi=110)
    if "memory" in out:
        s = out["memory"]["samples"]
        fig, ax = plt.subplots(figsize=(7, 3.5))
        ax.plot([t for t, _, _ in s], [b / 2**20 for _, b, _ in s], label="worker RSS (MiB)")
        ax.set_ylim(0, max(b for _, b, _ in s) / 2**20 * 1.5)
        ax2 = ax.twinx()
        ax2.plot([t for t, _, _ in s], [lag for _, _, lag in s], color="#c63", label="backlog (jobs)")
        ax.set_xlabel("seconds")
        ax.set_ylabel("RSS, MiB")
        ax2.set_ylabel("backlog, jobs")
        ax.set_title("Worker memory while draining a backlog")
        fig.tight_layout()
        fig.savefig(os.path.join(d, "memory.png"), dpi=110)


def rereport(path):
    """Writes the report again from a results.json (used after changing the report)."""
    out = json.load(open(path))
    for r in out.get("latency", []):
        if isinstance(r["batch_sizes"], dict):
            r["batch_sizes"] = [int(k) for k, c in r["batch_sizes"].items() for _ in range(c)]
    report(out, os.path.dirname(path))


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--jobs", type=int, default=20000, help="jobs for gpuq and the Python worker")
    p.add_argument("--peer-jobs", type=int, default=4000, help="jobs for RQ and Celery (slow)")
    p.add_argument("--backlog", type=int, default=1000000, help="backlog for the memory test")
    p.add_argument("--load-secs", type=float, default=3.0)
    p.add_argument("--backend", default="cpu")
    p.add_argument("--no-peers", action="store_true", help="skip RQ and Celery")
    p.add_argument("--skip", default="", help="comma list of: latency,memory,redis")
    p.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "latest"))
    p.add_argument("--compare", metavar="BIN", help="only: drain with this build and gpuq binary BIN, "
                   "alternating --rounds times")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--tls", action="store_true", help="only: drain over TLS (rediss://) against TCP, the same "
                   "jobs on the same Redis, alternating --rounds times")
    p.add_argument("--cluster", action="store_true", help="only: aggregate drain over 1 to --masters "
                   "Redis Cluster masters, one queue and one worker per master, beside a single Redis")
    p.add_argument("--masters", type=int, default=3)
    p.add_argument("--webhooks", type=int, default=0, metavar="N",
                   help="only the webhook benchmark, with N webhooks for throughput (webhooks.md)")
    p.add_argument("--embed-cache", type=int, metavar="N", help="only: N embed jobs with 0%% and 50%% repeated texts, "
                   "with and without --embed-cache-ttl (writes embed_cache.md and embed_cache.json)")
    p.add_argument("--decoder", type=int, metavar="N", help="only: N sentences through a Qwen3-shaped decoder "
                   "embedder, gpuq against a careful ONNX Runtime worker (writes decoder.md and decoder.json)")
    p.add_argument("--rerank", type=int, metavar="Q", help="only: Q rerank jobs of 100 documents each, gpuq "
                   "against a careful ONNX Runtime worker (writes rerank.md and rerank.json)")
    p.add_argument("--embed", type=int, metavar="N", help="only: the embedding benchmark on N sentences, "
                   "gpuq (f32, bf16, f32 capped at AVX2, and the build --compare names) against ONNX "
                   "Runtime and numpy workers, with the CPU GEMM rate (writes embed.md and embed.json)")
    p.add_argument("--knn-binary", type=int, metavar="N", help="only: binary knn's recall@10 and speed against "
                   "f32 on N sentences embedded with all-MiniLM-L6-v2 (writes knn_binary.md and knn_binary.json)")
    p.add_argument("--knn-queries", type=int, default=1000, help="held-out queries for --knn-binary")
    p.add_argument("--http", type=float, metavar="SECONDS", help="only: embedding requests through gpuq http "
                   "against the Python client straight to Redis, SECONDS each (writes http.md and http.json)")
    p.add_argument("--callers", type=int, default=16, help="with --http: concurrent callers")
    a = p.parse_args()
    if a.http:
        import http_bench
        print(http_bench.run(a.http, a.callers, a.out))
        return
    if a.cluster:
        import cluster_bench
        cluster_bench.run(a)
        return
    b = Bench(a)
    try:
        for only in ("knn_binary", "embed_cache", "decoder", "rerank", "embed"):   # each bench/lib/<only>_bench.py
            if getattr(a, only):
                return importlib.import_module(only + "_bench").run(b, getattr(a, only), a.out)
        if a.compare or a.tls:
            return b.compare() if a.compare else b.tls()
        if a.webhooks:
            import webhooks
            print(webhooks.run(b, a.out))
            return
        b.out["machine"] = b.machine()
        b.drain()
        skip = a.skip.split(",")
        if "latency" not in skip:
            b.latency()
        if "memory" not in skip:
            b.memory()
        if "redis" not in skip:
            b.redis_limit()
        report(b.out, a.out)
        print(open(os.path.join(a.out, "results.md")).read())
    finally:
        b.close()


if __name__ == "__main__":
    main()
