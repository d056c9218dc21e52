"""Scaling over Redis Cluster masters: one queue per master, one worker per
queue, all started on the same node; the aggregate drain of a backlog over 1,
2 and 3 masters, and worker and Redis CPU per job, beside a single (non-cluster)
Redis with one worker. A small job (a 1-row mlp 16 -> 16) so that the queue
path, not the compute, is what is measured. No replicas: they would only take
CPU from the masters on a small host."""
import os
import subprocess
import tempfile
import time

import msgpack
import numpy as np
import redis
from redis.cluster import key_slot

from bench import GPUQ, ROOT, cpu_seconds, free_port, log


def start_redis(tmp, *args):
    port = free_port()
    while port >= 55535:    # a cluster node's bus port is port + 10000
        port = free_port()
    d = tempfile.mkdtemp(dir=tmp)
    p = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                          "--appendonly", "no", "--dir", d, *args], stdout=subprocess.DEVNULL)
    r = redis.Redis(port=port)
    for _ in range(200):
        try:
            r.ping()
            return p, r, port
        except redis.ConnectionError:
            time.sleep(0.02)
    raise RuntimeError("redis-server did not start")


def start_cluster(tmp, masters):
    """masters nodes, each holding an even share of the slots, met together."""
    nodes = [start_redis(tmp, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf")
             for _ in range(masters)]
    for i, (_, r, _) in enumerate(nodes):
        r.execute_command("CLUSTER", "ADDSLOTSRANGE", i * 16384 // masters, (i + 1) * 16384 // masters - 1)
    for _, r, _ in nodes[1:]:
        r.execute_command("CLUSTER", "MEET", "127.0.0.1", nodes[0][2])
    deadline = time.time() + 30
    while not all(b"cluster_state:ok" in r.execute_command("CLUSTER", "INFO") and
                  len(r.execute_command("CLUSTER", "SLOTS")) == masters for _, r, _ in nodes):
        if time.time() > deadline:
            raise RuntimeError("the cluster did not settle")
        time.sleep(0.1)
    return nodes


def queue_on(i, masters):
    """A queue name whose slot is in master i's share."""
    for n in range(100000):
        q = f"q{n}"
        if key_slot(f"gpuq:{{{q}}}:jobs".encode()) * masters // 16384 == i:
            return q
    raise RuntimeError("no queue name found")


def drain(nodes, queues, owners, jobs, model, binary):
    """Enqueues jobs per queue on its master, starts one worker per queue on the
    first node, times first to last result over all reply lists."""
    x = np.random.default_rng(0).standard_normal((1, 16)).astype(np.float32)
    for q, r in zip(queues, owners):
        reply = f"gpuq:{{{q}}}:reply"
        r.delete(reply)
        packed = msgpack.packb({"op": "mlp", "model": "m", "reply_to": reply, "result_ttl": 0,
                                "inputs": {"x": {"dtype": "f32", "shape": [1, 16], "data": x.tobytes()}}})
        p = r.pipeline(transaction=False)
        for i in range(jobs):
            p.xadd(f"gpuq:{{{q}}}:jobs", {"job": packed})
            if i % 5000 == 4999:
                p.execute()
        p.execute()
    rcpu0 = sum(r.info("cpu")["used_cpu_user"] + r.info("cpu")["used_cpu_sys"] for _, r, _ in nodes)
    logs, workers = [], []
    for q in queues:
        logf = open(os.path.join(tempfile.gettempdir(), f"gpuq-cluster-bench-{q}.log"), "w")
        logs.append(logf.name)
        workers.append(subprocess.Popen([binary, "worker", "--redis", f"redis://127.0.0.1:{nodes[0][2]}",
                                         "--backend", "cpu", "--cpu-threads", "1", "--model", f"m={model}",
                                         "--queue", q], stderr=logf))
    for name in logs:
        while "ready" not in open(name).read():
            time.sleep(0.01)
    cpu0 = [cpu_seconds(w.pid) for w in workers]
    total, t_first, deadline = jobs * len(queues), None, time.time() + 600
    while True:
        n = sum(r.llen(f"gpuq:{{{q}}}:reply") for q, r in zip(queues, owners))
        if n and t_first is None:
            t_first = time.time()
        if n >= total:
            break
        if time.time() > deadline:
            raise RuntimeError(f"only {n} of {total} results")
        time.sleep(0.002)
    rate = (total - 1) / (time.time() - t_first)
    cpu = sum(cpu_seconds(w.pid) - c for w, c in zip(workers, cpu0))
    rcpu = sum(r.info("cpu")["used_cpu_user"] + r.info("cpu")["used_cpu_sys"] for _, r, _ in nodes) - rcpu0
    for w in workers:
        w.terminate()
        w.wait()
    return {"jobs": total, "jobs_per_s": rate, "worker_cpu_us_per_job": cpu / total * 1e6,
            "redis_cpu_us_per_job": rcpu / total * 1e6}


def run(a):
    tmp = tempfile.mkdtemp(prefix="gpuq-cluster-bench-")
    model = os.path.join(tmp, "m.safetensors")
    subprocess.check_call([os.path.join(ROOT, "scripts", "make-model"), model, "16", "16"])
    rows = []
    for masters in [0] + list(range(1, a.masters + 1)):
        for rnd in range(a.rounds):
            if masters == 0:
                nodes = [start_redis(tmp)]
                queues, owners = ["default"], [nodes[0][1]]
            else:
                nodes = start_cluster(tmp, masters)
                queues = [queue_on(i, masters) for i in range(masters)]
                owners = [nodes[i][1] for i in range(masters)]
            try:
                res = drain(nodes, queues, owners, a.jobs // max(masters, 1), model, GPUQ)
            finally:
                for p, _, _ in nodes:
                    p.kill()
                    p.wait()
            res["masters"] = masters
            rows.append(res)
            log(f"{'single Redis' if masters == 0 else f'{masters} masters'}, round {rnd + 1}: "
                f"{res['jobs_per_s']:,.0f} jobs/s, worker {res['worker_cpu_us_per_job']:.2f} us CPU/job, "
                f"Redis {res['redis_cpu_us_per_job']:.2f} us CPU/job")
    print("| Redis | workers | jobs/s (aggregate) | worker CPU us/job | Redis CPU us/job |")
    print("| --- | --- | --- | --- | --- |")
    for masters in sorted({r["masters"] for r in rows}):
        rs = [r for r in rows if r["masters"] == masters]
        print(f"| {'single' if masters == 0 else f'cluster, {masters} master' + ('s' if masters > 1 else '')} "
              f"| {max(masters, 1)} | {np.mean([r['jobs_per_s'] for r in rs]):,.0f} "
              f"| {np.mean([r['worker_cpu_us_per_job'] for r in rs]):.2f} "
              f"| {np.mean([r['redis_cpu_us_per_job'] for r in rs]):.2f} |")
