"""A worker on a real Redis Cluster: 3 masters and 3 replicas on loopback,
queues on different masters, a resharding and a failover under load."""
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import unittest

import msgpack
import numpy as np
import redis
from redis.cluster import RedisCluster, key_slot

import harness
from harness import Redis, WorkerTest, make_mlp, tensor

PREFIX = "gpuq"


class Cluster:
    """Six redis-servers joined by redis-cli --cluster create, one replica each.
    With tls (a tlscerts.Certs), every link is TLS: clients, the cluster bus
    and replication."""

    def __init__(self, n=6, tls=None):
        self.tls = tls
        more = ("--tls-cluster", "yes", "--tls-replication", "yes") if tls else ()
        self.nodes = []
        # redis-cli's flags to speak to the nodes
        self.cli = ["--tls", "--cacert", tls.ca, "--cert", tls.client[0], "--key", tls.client[1]] if tls else []
        try:
            for _ in range(n):
                self.nodes.append(Redis("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                                        "--cluster-node-timeout", "1000", *more, tls=tls))
            subprocess.run(["redis-cli", *self.cli, "--cluster", "create",
                            *[f"127.0.0.1:{n.port}" for n in self.nodes],
                            "--cluster-replicas", "1", "--cluster-yes"],
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, timeout=60)
            self.wait_ok(replicas=True)
        except BaseException:
            self.stop()
            raise
        self.client = self.connect(self.nodes[0].port)

    def connect(self, port):
        """A redis-py cluster client seeded with the node on port."""
        kw = {}
        if self.tls:
            kw = dict(ssl=True, ssl_ca_certs=self.tls.ca, ssl_certfile=self.tls.client[0],
                      ssl_keyfile=self.tls.client[1])
        return RedisCluster(host="127.0.0.1", port=port, **kw)

    def alive(self):
        return [n for n in self.nodes if n.proc.poll() is None]

    def wait_ok(self, timeout=30, replicas=False):
        """Until every live node says cluster_state:ok and agrees on the masters
        (and, with replicas, every master has one)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                views = {tuple(sorted((s[0], s[1], s[2][1], replicas and len(s) > 3)
                                      for s in n.client.execute_command("CLUSTER", "SLOTS")))
                         for n in self.alive()}
                if replicas and not all(v[3] for view in views for v in view):
                    raise redis.RedisError("no replicas yet")
                if len(views) == 1 and all(b"cluster_state:ok" in n.client.execute_command("CLUSTER", "INFO")
                                           for n in self.alive()):
                    return
            except redis.RedisError:
                pass
            time.sleep(0.1)
        raise AssertionError("the cluster did not settle")

    def master_of(self, slot):
        """The live node that serves slot, by asking a live one."""
        for n in self.alive():
            try:
                for lo, hi, m, *_ in n.client.execute_command("CLUSTER", "SLOTS"):
                    if lo <= slot <= hi:
                        return next(x for x in self.nodes if x.port == int(m[1]))
            except redis.RedisError:
                continue
        raise AssertionError(f"no node serves slot {slot}")

    def node_id(self, node):
        return node.client.execute_command("CLUSTER", "MYID").decode()

    def stop(self):
        for n in self.nodes:
            n.stop()


def jobs_key(q):
    return f"{PREFIX}:{{{q}}}:jobs"


def queues_on_masters(cluster, n):
    """n queue names whose slots lie on n different masters, the first one's
    among the first 30 slots of its master's (a resharding moves few)."""
    names, masters = [], set()
    ranges = cluster.nodes[0].client.execute_command("CLUSTER", "SLOTS")
    for i in range(100000):
        q = f"q{i}"
        slot = key_slot(jobs_key(q).encode())
        m = cluster.master_of(slot).port
        if not names and not any(lo <= slot < lo + 30 for lo, *_ in ranges):
            continue
        if m not in masters:
            masters.add(m)
            names.append(q)
            if len(names) == n:
                return names
    raise AssertionError("no queues found")


def job(x, jid, reply_to):
    return msgpack.packb({"op": "mlp", "model": "m", "inputs": {"x": x}, "id": jid,
                          "reply_to": reply_to}, use_bin_type=True)


class ClusterTest(WorkerTest):
    tls = False     # a TLS cluster (test_tls_cluster.py)

    def setUp(self):
        super().setUp()     # a plain Redis too, unused but harmless
        self.certs = None
        if self.tls:
            import tlscerts     # needs python3-cryptography: only here
            self.certs = tlscerts.Certs(self.tmp)
        self.cluster = Cluster(tls=self.certs)
        self.c = self.cluster.client
        self.queues = queues_on_masters(self.cluster, 3)
        self.x = tensor(np.ones((1, 16), np.float32))
        make_mlp(self.path("m.safetensors"), [16, 8], seed=1)

    def tearDown(self):
        super().tearDown()
        self.c.close()
        self.cluster.stop()

    def start_worker(self, seed, *args, env=None):
        from harness import Worker
        if self.certs:
            args = ("--redis-ca", self.certs.ca) + args
        w = Worker(seed.url, "--model", f"m={self.path('m.safetensors')}",
                   *[a for q in self.queues for a in ("--queue", q)], "--claim-idle-ms", "2000", *args,
                   env=env)
        self.workers.append(w)
        return w

    def enqueue(self, q, ids, reply_to):
        for i in range(0, len(ids), 500):
            p = self.c.pipeline()
            for jid in ids[i:i + 500]:
                p.xadd(jobs_key(q), {"job": job(self.x, jid, reply_to)})
            p.execute()

    def wait_answered(self, q, ids, w, timeout=60):
        """Until every id of q has its result key, then until nothing is pending."""
        deadline, left = time.time() + timeout, list(ids)
        while left:
            self.assertLess(time.time(), deadline, f"{len(left)} of {len(ids)} jobs on {q} unanswered, "
                            f"first {left[:3]}\n{w.output()[-3000:]}")
            try:
                p = self.c.pipeline()
                for jid in left[:2000]:
                    p.exists(f"{PREFIX}:{{{q}}}:result:{jid}")
                found = p.execute()
                left = [jid for jid, f in zip(left[:2000], found) if not f] + left[2000:]
            except redis.RedisError:
                pass
            if left:
                time.sleep(0.1)
        while True:
            self.assertLess(time.time(), deadline, f"entries left pending on {q}\n{w.output()[-3000:]}")
            try:
                if self.c.xpending(jobs_key(q), "workers")["pending"] == 0 and self.c.xlen(jobs_key(q)) == 0:
                    return
            except redis.RedisError:
                pass
            time.sleep(0.1)

    def wait_taken_over(self, slot, master):
        """Until a replica of the dead master serves slot."""
        deadline = time.time() + 30
        while self.cluster.master_of(slot).port == master.port:
            self.assertLess(time.time(), deadline, "no replica took over")
            time.sleep(0.1)

    def replies(self, key):
        return [msgpack.unpackb(b, raw=False)["id"] for b in self.c.lrange(key, 0, -1)]


class NoInfo(WorkerTest):
    def test_a_redis_refusing_info_is_a_single_redis(self):
        """Cluster detection asks INFO; an ACL without it still serves."""
        self.r.acl_setuser("gpuq", enabled=True, passwords=["+secret"], keys=["*"],
                           commands=["+@all", "-info"])
        self.redis.url = f"redis://gpuq:secret@127.0.0.1:{self.redis.port}"
        make_mlp(self.path("m.safetensors"), [16, 8], seed=1)
        self.worker("--model", f"m={self.path('m.safetensors')}")
        self.client.enqueue({"op": "mlp", "model": "m", "id": "j",
                             "inputs": {"x": tensor(np.ones((1, 16), np.float32))},
                             "reply_to": "gpuq:{default}:r"})
        self.assertEqual(self.client.wait("gpuq:{default}:r")["status"], "ok")


class Ports(unittest.TestCase):
    def test_a_node_whose_bus_port_is_taken_moves(self):
        """A cluster node exits at start when some connection's own end
        holds its bus port (port + 10000); the harness then takes another
        port rather than failing the test that wanted a cluster."""
        with socket.socket() as srv, socket.socket() as c:
            srv.bind(("127.0.0.1", 0))
            srv.listen()
            c.bind(("127.0.0.1", 0))
            c.connect(srv.getsockname())
            taken = c.getsockname()[1] - 10000
            ports, free_port = iter([taken]), harness.free_port
            harness.free_port = lambda below=65536: next(ports, None) or free_port(below)
            try:
                node = Redis("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf")
            finally:
                harness.free_port = free_port
            try:
                self.assertNotEqual(node.port, taken)
                self.assertTrue(node.client.ping())
            finally:
                node.stop()


class Serve(ClusterTest):
    def test_queues_on_three_masters_answered_once(self):
        masters = {self.cluster.master_of(key_slot(jobs_key(q).encode())).port for q in self.queues}
        self.assertEqual(len(masters), 3)
        # the seed is a replica: the worker finds the masters from it
        seed = next(n for n in self.cluster.nodes
                    if n.client.info("replication")["role"] == "slave")
        w = self.start_worker(seed)
        far = "replies:{elsewhere}"
        self.assertNotEqual(self.cluster.master_of(key_slot(far.encode())).port,
                            self.cluster.master_of(key_slot(jobs_key(self.queues[0]).encode())).port)
        ids = {q: [f"{q}-{i}" for i in range(300)] for q in self.queues}
        for q in self.queues:
            self.enqueue(q, ids[q][:200], f"{PREFIX}:{{{q}}}:replies")
            self.enqueue(q, ids[q][200:], far)
        for q in self.queues:
            self.wait_answered(q, ids[q], w)
        # exactly once: no failure happened, so no job ran twice
        for q in self.queues:
            got = self.replies(f"{PREFIX}:{{{q}}}:replies")
            self.assertEqual(sorted(got), sorted(ids[q][:200]))
        got = self.replies(far)
        self.assertEqual(sorted(got), sorted(i for q in self.queues for i in ids[q][200:]))
        self.assertNotIn("push refused", w.output())
        self.assertEqual(w.stop(), 0)


class Producer(threading.Thread):
    """Enqueues batches of jobs to q until stopped; keeps the ids Redis took."""

    def __init__(self, test, q):
        super().__init__(daemon=True)
        self.test, self.q, self.ids, self.halt = test, q, [], threading.Event()
        self.c = test.cluster.connect(test.cluster.alive()[0].port)

    def run(self):
        n = 0
        while not self.halt.is_set():
            batch = [f"{self.q}-{n + i}" for i in range(50)]
            try:
                p = self.c.pipeline()
                for jid in batch:
                    p.xadd(jobs_key(self.q), {"job": job(self.test.x, jid, f"{PREFIX}:{{{self.q}}}:r")})
                for jid, res in zip(batch, p.execute(raise_on_error=False)):
                    if not isinstance(res, Exception):
                        self.ids.append(jid)
            except redis.RedisError:
                time.sleep(0.05)
            n += 50
            time.sleep(0.05)

    def stop(self):
        self.halt.set()
        self.join(30)
        self.c.close()


class Reshard(ClusterTest):
    def test_reshard_a_queue_slot_under_load(self):
        q = self.queues[0]
        slot = key_slot(jobs_key(q).encode())
        src = self.cluster.master_of(slot)
        dst = self.cluster.master_of(key_slot(jobs_key(self.queues[1]).encode()))
        w = self.start_worker(src, "--max-batch", "4")     # busy: writes meet the migration
        producers = [Producer(self, name) for name in self.queues]
        for p in producers:
            p.start()
        time.sleep(1)
        # move every slot from the source's first one to the queue's: reshard takes them in order
        first = min(lo for lo, hi, m, *_ in src.client.execute_command("CLUSTER", "SLOTS")
                    if int(m[1]) == src.port and lo <= slot)
        subprocess.run(["redis-cli", *self.cluster.cli, "--cluster", "reshard", f"127.0.0.1:{src.port}",
                        "--cluster-from", self.cluster.node_id(src), "--cluster-to",
                        self.cluster.node_id(dst), "--cluster-slots", str(slot - first + 1),
                        "--cluster-pipeline", "1000", "--cluster-yes"], check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.STDOUT, timeout=120)
        self.assertEqual(self.cluster.master_of(slot).port, dst.port, "the queue's slot did not move")
        self.c.close()
        self.c = self.cluster.connect(dst.port)
        time.sleep(1)
        for p in producers:
            p.stop()
        for p in producers:
            self.assertGreater(len(p.ids), 100)
            self.wait_answered(p.q, p.ids, w)
        self.assertEqual(w.stop(), 0)


class Migrate(ClusterTest):
    def test_slot_moves_while_the_worker_holds_a_batch(self):
        """The batch's transaction meets the migration half done (ASK: nothing acked, later),
        then done (MOVED: built again for the new master), with no delivery counted more."""
        q = self.queues[0]
        slot = key_slot(jobs_key(q).encode())
        src = self.cluster.master_of(slot)
        dst = self.cluster.master_of(key_slot(jobs_key(self.queues[1]).encode()))
        ids = [f"{q}-{i}" for i in range(5)]
        self.enqueue(q, ids, f"{PREFIX}:{{{q}}}:r")
        w = self.start_worker(src, env={"GPUQ_FAULT": "slow-ms=2000"})   # holds the batch 2 s
        deadline = time.time() + 10
        while src.client.xpending(jobs_key(q), "workers")["pending"] < len(ids):
            self.assertLess(time.time(), deadline, w.output())
            time.sleep(0.01)
        dst.client.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", self.cluster.node_id(src))
        src.client.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", self.cluster.node_id(dst))
        keys = src.client.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 1000)
        src.client.execute_command("MIGRATE", "127.0.0.1", dst.port, "", 0, 5000, "KEYS", *keys)
        deadline = time.time() + 10
        while "refused the results (ASK" not in w.output():
            self.assertLess(time.time(), deadline, w.output())
            time.sleep(0.05)
        self.assertIsNone(self.c.get(f"{PREFIX}:{{{q}}}:result:{ids[0]}"))
        for n in self.cluster.alive():
            if n.client.info("replication")["role"] == "master":
                n.client.execute_command("CLUSTER", "SETSLOT", slot, "NODE", self.cluster.node_id(dst))
        self.wait_answered(q, ids, w)
        self.assertEqual(sorted(self.replies(f"{PREFIX}:{{{q}}}:r")), sorted(ids))
        self.assertNotIn("dead letter", w.output())
        self.assertEqual(w.stop(), 0)


class Failover(ClusterTest):
    def test_master_killed_under_load(self):
        q = self.queues[0]
        slot = key_slot(jobs_key(q).encode())
        master = self.cluster.master_of(slot)
        ids = [f"{q}-{i}" for i in range(20000)]
        self.enqueue(q, ids, f"{PREFIX}:{{{q}}}:r")
        # the backlog is on the replica before the master dies: Redis's one
        # allowed loss (writes acknowledged but not yet replicated) is not this test's
        self.assertEqual(master.client.execute_command("WAIT", 1, 10000), 1)
        w = self.start_worker(master, "--max-batch", "16")    # the seed is the master that dies
        deadline = time.time() + 30
        while master.client.xlen(jobs_key(q)) > len(ids) * 0.8:
            self.assertLess(time.time(), deadline, w.output()[-3000:])
            time.sleep(0.01)
        producers = [Producer(self, name) for name in self.queues[1:]]
        for p in producers:
            p.start()
        master.kill()
        self.wait_taken_over(slot, master)
        self.cluster.wait_ok()
        self.c.close()
        self.c = self.cluster.connect(self.cluster.alive()[0].port)
        after = [f"{q}-after-{i}" for i in range(200)]
        self.enqueue(q, after, f"{PREFIX}:{{{q}}}:r")
        time.sleep(0.5)
        for p in producers:
            p.stop()
        self.wait_answered(q, ids + after, w, timeout=120)
        for p in producers:
            self.wait_answered(p.q, p.ids, w)
        self.assertEqual(w.stop(), 0)


    def test_start_while_a_master_is_down(self):
        """A master dies and the worker starts (its seed healthy) before the
        cluster notices: it serves the queues it can and takes the dead one's
        once a replica has taken over."""
        q, others = self.queues[0], self.queues[1:]
        slot = key_slot(jobs_key(q).encode())
        master = self.cluster.master_of(slot)
        ids = [f"{q}-{i}" for i in range(50)]
        self.enqueue(q, ids, f"{PREFIX}:{{{q}}}:r")
        self.assertEqual(master.client.execute_command("WAIT", 1, 10000), 1)
        master.kill()
        seed = next(n for n in self.cluster.alive() if n.client.execute_command("ROLE")[0] == b"master")
        w = self.start_worker(seed)
        self.assertIsNone(w.proc.poll(), w.output())
        self.assertIn(f"queue {q}: its Redis Cluster master does not answer", w.output())
        for o in others:
            oids = [f"{o}-{i}" for i in range(50)]
            self.enqueue(o, oids, f"{PREFIX}:{{{o}}}:r")
            self.wait_answered(o, oids, w, timeout=20)
        self.wait_taken_over(slot, master)
        self.cluster.wait_ok()
        self.c.close()
        self.c = self.cluster.connect(seed.port)
        self.wait_answered(q, ids, w)
        self.assertIn(f"queue {q}: its master answers; served again", w.output())
        self.assertEqual(w.stop(), 0)

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
NODE_SCRIPT = """
const { Gpuq, tensor } = require(process.env.GPUQ_JS);
(async () => {
  const gq = await new Gpuq({ url: process.env.GPUQ_REDIS, queue: process.env.GPUQ_QUEUE, cluster: true }).connect();
  const res = await gq.run('mlp', { x: tensor('f32', [1, 16], new Array(16).fill(1)) }, { model: 'm', id: 'node-1' });
  const stored = await gq.enqueue('mlp', { x: tensor('f32', [1, 16], new Array(16).fill(1)) }, { model: 'm', id: 'node-2' });
  let r2 = null;
  for (let i = 0; i < 100 && !r2; i++) { r2 = await gq.result('node-2'); await new Promise((ok) => setTimeout(ok, 50)); }
  console.log(JSON.stringify({ status: res.status, id: res.id, stored: r2 && r2.status, entry: !!stored }));
  await gq.close();
})().catch((e) => { console.error(e); process.exit(1); });
"""


def cli(*args):
    from harness import GPUQ
    return subprocess.run([GPUQ, *args], capture_output=True, text=True, timeout=60)


class Clients(ClusterTest):
    def test_cli_python_and_node_clients(self):
        """Each speaks to a node that does not hold its queue and is sent on."""
        w = self.start_worker(self.cluster.nodes[0])
        q = self.queues[1]
        elsewhere = next(n for n in self.cluster.nodes
                         if n.port != self.cluster.master_of(key_slot(jobs_key(q).encode())).port)
        p = cli("enqueue", "--redis", elsewhere.url, "--queue", q, "--op", "mlp", "--model", "m",
                "--input", "x=rand:1x16", "--count", "20", "--wait", "20", "--quiet")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("20 results (20 ok, 0 errors)", p.stdout)
        self.c.xadd(jobs_key(q), {"job": b"garbage"})
        p = cli("stats", "--redis", elsewhere.url, "--queue", q, "--window", "0.2")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertRegex(p.stdout, r"consumers\s+1")
        deadline = time.time() + 10
        while "undecodable, 7 bytes" not in cli("dead", "list", "--redis", elsewhere.url, "--queue", q).stdout:
            self.assertLess(time.time(), deadline, w.output()[-2000:])
            time.sleep(0.1)
        sys.path.insert(0, os.path.join(ROOT, "clients", "python"))
        import gpuq_client
        gc = gpuq_client.Client(elsewhere.url, queue=q, cluster=True)
        res = gc.run("mlp", {"x": np.ones((1, 16), np.float32)}, model="m", timeout=20)
        self.assertEqual(res.status, "ok")
        gc.close()

        async def run_async():
            ac = gpuq_client.AsyncClient(elsewhere.url, queue=self.queues[2], cluster=True)
            try:
                return await ac.run("mlp", {"x": np.ones((1, 16), np.float32)}, model="m", timeout=20)
            finally:
                await ac.close()
        self.assertEqual(asyncio.run(run_async()).status, "ok")
        if shutil.which("node") and os.path.isdir("/usr/share/nodejs/redis"):
            p = subprocess.run(["node", "-e", NODE_SCRIPT], capture_output=True, text=True, timeout=60,
                               env=dict(os.environ, NODE_PATH="/usr/share/nodejs", GPUQ_REDIS=elsewhere.url,
                                        GPUQ_QUEUE=self.queues[2],
                                        GPUQ_JS=os.path.join(ROOT, "clients", "node", "gpuq.js")))
            self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
            self.assertEqual(json.loads(p.stdout), {"status": "ok", "id": "node-1", "stored": "ok", "entry": True})
        self.assertEqual(w.stop(), 0)


if __name__ == "__main__":
    unittest.main()
