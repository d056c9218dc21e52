"""rediss://: the worker, the client commands and the Python and Node clients
on a redis-server that speaks only TLS, with certificates made for the test:
jobs served (small and large, pipelined, after idle blocking reads), each
way a start can fail said on one line with exit 2, mutual TLS, and the
worker reconnecting after CLIENT KILL and after a bad certificate."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

import msgpack
import numpy as np
import redis

import tlscerts
from harness import GPUQ, Client, Redis, Worker, make_mlp, mlp_ref, tensor, from_tensor

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


def gpuq(*args, env=None, timeout=60):
    return subprocess.run([GPUQ, *args], capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, **(env or {})))


class TLSTest(unittest.TestCase):
    """A TLS-only Redis (client certificates optional) per test."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="gpuq-tls-")
        self.certs = tlscerts.Certs(self.tmp)
        self.redis = Redis(tls=self.certs)
        self.r = self.redis.client
        self.client = Client(self.r)
        self.workers = []
        self.mlp = make_mlp(os.path.join(self.tmp, "m.safetensors"), [16, 8], seed=1)

    def tearDown(self):
        for w in self.workers:
            if w.proc.poll() is None:
                w.proc.kill()
                w.proc.wait()
        self.redis.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def worker(self, *args, url=None, env=None):
        w = Worker(url or self.redis.url, "--model", f"m={self.tmp}/m.safetensors", *args, env=env)
        self.workers.append(w)
        return w

    def serve_cert(self, pair):
        """Redis shows this certificate to connections from now on."""
        self.r.execute_command("CONFIG", "SET", "tls-cert-file", pair[0], "tls-key-file", pair[1])

    def run_job(self, jid, x=None):
        x = np.ones((1, 16), np.float32) if x is None else x
        reply = self.client.key(f"reply:{jid}")
        self.client.enqueue({"op": "mlp", "model": "m", "inputs": {"x": tensor(x)}, "id": jid,
                             "reply_to": reply})
        return self.client.wait(reply)

    def wait_log(self, w, text, count=1, timeout=30):
        deadline = time.time() + timeout
        while w.output().count(text) < count:
            self.assertLess(time.time(), deadline, f"no {text!r} in the log:\n{w.output()[-3000:]}")
            time.sleep(0.05)


class Serve(TLSTest):
    def test_jobs_small_large_and_after_idle_reads(self):
        wide = make_mlp(os.path.join(self.tmp, "wide.safetensors"), [4096, 4], seed=2)
        w = self.worker("--redis-ca", self.certs.ca, "--model", f"wide={self.tmp}/wide.safetensors",
                        "--max-batch", "64")
        self.assertRegex(w.output(), r"serving default on 127\.0\.0\.1 \(TLS\)")
        # many small jobs in one pipeline: batches, pipelined reads and transactions
        reply = self.client.key("reply:many")
        xs = np.random.default_rng(3).standard_normal((500, 16)).astype(np.float32)
        p = self.r.pipeline(transaction=False)
        for i in range(500):
            p.xadd(self.client.key("jobs"), {"job": msgpack.packb(
                {"op": "mlp", "model": "m", "inputs": {"x": tensor(xs[i:i + 1])}, "id": f"s{i}",
                 "reply_to": reply}, use_bin_type=True)})
        p.execute()
        got = {}
        while len(got) < 500:
            res = self.client.wait(reply)
            self.assertEqual(res["status"], "ok", res.get("error"))
            got[res["id"]] = from_tensor(res["outputs"]["y"])
        for i in (0, 137, 499):
            np.testing.assert_allclose(got[f"s{i}"], mlp_ref(self.mlp, xs[i:i + 1]), rtol=1e-4, atol=1e-4)
        # large values both ways: 4 MB of input per job, over many TLS records
        big = np.random.default_rng(4).standard_normal((256, 4096)).astype(np.float32)
        for i in range(3):
            jreply = self.client.key(f"reply:big{i}")
            self.client.enqueue({"op": "mlp", "model": "wide", "inputs": {"x": tensor(big)},
                                 "id": f"big{i}", "reply_to": jreply})
            res = self.client.wait(jreply)
            self.assertEqual(res["status"], "ok", res.get("error"))
            np.testing.assert_allclose(from_tensor(res["outputs"]["y"]), mlp_ref(wide, big), rtol=1e-3, atol=1e-3)
        # idle long enough for several blocking reads to time out, then one more job
        time.sleep(2.5)
        self.assertEqual(self.run_job("late")["status"], "ok")
        self.assertNotIn("reconnecting", w.output())
        self.assertEqual(w.stop(), 0)

    def test_client_commands(self):
        """By name (SNI, the name checked) as well as by address."""
        self.worker("--redis-ca", self.certs.ca)
        url = f"rediss://localhost:{self.redis.port}"
        p = gpuq("enqueue", "--redis", url, "--redis-ca", self.certs.ca, "--op", "mlp", "--model", "m",
                 "--input", "x=rand:1x16", "--count", "50", "--wait", "20", "--quiet")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("50 results (50 ok, 0 errors)", p.stdout)
        p = gpuq("stats", "--redis", self.redis.url, "--window", "0.2", env={"GPUQ_REDIS_CA": self.certs.ca})
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertRegex(p.stdout, r"consumers\s+1")
        self.client.enqueue(None, raw=b"garbage")
        deadline = time.time() + 20
        while True:
            p = gpuq("dead", "list", "--redis", url, "--redis-ca", self.certs.ca)
            self.assertEqual(p.returncode, 0, p.stderr)
            if "undecodable, 7 bytes" in p.stdout:
                break
            self.assertLess(time.time(), deadline, p.stdout)
            time.sleep(0.1)

    def test_python_and_node_clients(self):
        self.worker("--redis-ca", self.certs.ca)
        sys.path.insert(0, os.path.join(ROOT, "clients", "python"))
        import gpuq_client
        x = np.ones((1, 16), np.float32)
        gc = gpuq_client.Client(self.redis.url, ssl_ca_certs=self.certs.ca)
        self.assertEqual(gc.run("mlp", {"x": x}, model="m", timeout=20).status, "ok")
        gc.close()
        # the system's CAs do not know the test's: refused
        gc = gpuq_client.Client(self.redis.url)
        with self.assertRaises(redis.ConnectionError) as e:
            gc.run("mlp", {"x": x}, model="m", timeout=5)
        self.assertIn("certificate verify failed", str(e.exception))
        with self.assertRaises(ValueError):
            gpuq_client.Client(self.redis.url.replace("rediss", "redis"), ssl_ca_certs=self.certs.ca)
        # AsyncClient takes the same options; on a single Redis it is left to
        # the package's own tests (test_clients.py), whose redis-py it needs
        if not (shutil.which("node") and os.path.isdir("/usr/share/nodejs/redis")):
            return
        script = """
const fs = require('fs');
const { Gpuq, tensor } = require(process.env.GPUQ_JS);
(async () => {
  const tls = process.env.GPUQ_CA ? { ca: fs.readFileSync(process.env.GPUQ_CA) } : undefined;
  const gq = await new Gpuq({ url: process.env.GPUQ_REDIS, tls }).connect();
  const res = await gq.run('mlp', { x: tensor('f32', [1, 16], new Array(16).fill(1)) }, { model: 'm', id: 'node-1' });
  console.log(JSON.stringify({ status: res.status, id: res.id }));
  await gq.close();
})().catch((e) => { console.error(e.message); process.exit(1); });
"""
        env = dict(os.environ, NODE_PATH="/usr/share/nodejs", GPUQ_REDIS=self.redis.url, GPUQ_CA=self.certs.ca,
                   GPUQ_JS=os.path.join(ROOT, "clients", "node", "gpuq.js"))
        p = subprocess.run(["node", "-e", script], capture_output=True, text=True, timeout=60, env=env)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertEqual(json.loads(p.stdout), {"status": "ok", "id": "node-1"})
        env["GPUQ_CA"] = ""
        p = subprocess.run(["node", "-e", script], capture_output=True, text=True, timeout=60, env=env)
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        self.assertIn("cannot connect to Redis", p.stderr)


class StartFailures(TLSTest):
    """Each is one line naming the cause, and exit 2, from the worker and
    from a client command alike."""

    def fails(self, url, args, why):
        for cmd in (["worker", "--backend", "cpu"], ["stats"]):
            p = gpuq(*cmd, "--redis", url, *args, timeout=30)
            self.assertEqual(p.returncode, 2, f"{cmd[0]}: {p.stdout}{p.stderr}")
            lines = [l for l in p.stderr.splitlines() if l.startswith(f"gpuq {cmd[0]}:")]
            self.assertEqual(len(lines), 1, p.stderr)
            self.assertIn(why, lines[0])
            self.assertIn("Redis at", lines[0])
        self.assertEqual(p.stderr.count("\n"), 1, p.stderr)   # the client command says nothing else

    def test_each_failure(self):
        url, ca = self.redis.url, self.certs.ca
        self.fails(url, ["--redis-ca", self.certs.other_ca], "certificate verify failed")
        self.fails(url, [], "certificate verify failed")    # the system's CAs
        self.fails(url.replace("rediss", "redis"), [], "a TLS port? rediss://")
        plain = Redis()
        try:
            self.fails(f"rediss://127.0.0.1:{plain.port}", ["--redis-ca", ca], "a plain TCP port?")
        finally:
            plain.stop()
        self.serve_cert(self.certs.expired)
        self.fails(url, ["--redis-ca", ca], "certificate has expired")
        self.serve_cert(self.certs.wrong_host)
        self.fails(url, ["--redis-ca", ca], "IP address mismatch")
        self.fails(f"rediss://localhost:{self.redis.port}", ["--redis-ca", ca], "hostname mismatch")
        # --redis-insecure takes it, and says so
        w = self.worker("--redis-insecure")
        self.assertIn("NOT verified", w.output())
        self.assertIn("(TLS, unverified)", w.output())
        self.assertEqual(self.run_job("insecure")["status"], "ok")
        p = gpuq("stats", "--redis", url, "--redis-insecure")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("NOT verified", p.stderr)

    def test_bad_files(self):
        for args, why in ((["--redis-ca", "/nonexistent/ca.pem"], "No such file"),
                          (["--redis-cert", self.certs.client[0]], "no private key in it"),
                          (["--redis-cert", self.certs.client[0], "--redis-key", self.certs.server[1]],
                           "--redis-key")):
            for cmd in (["worker", "--backend", "cpu"], ["stats"]):
                p = gpuq(*cmd, "--redis", self.redis.url, *args)
                self.assertEqual(p.returncode, 2, p.stderr)
                self.assertIn(why, p.stderr.strip().splitlines()[-1])


class MutualTLS(TLSTest):
    def test_with_and_without_a_client_certificate(self):
        self.r.config_set("tls-auth-clients", "yes")
        ca, (cert, key) = self.certs.ca, self.certs.client
        for cmd in (["worker", "--backend", "cpu"], ["stats"]):
            p = gpuq(*cmd, "--redis", self.redis.url, "--redis-ca", ca, timeout=30)
            self.assertEqual(p.returncode, 2, p.stderr)
            self.assertIn("--redis-cert", p.stderr.strip().splitlines()[-1])
        # a certificate from a CA Redis does not trust is no better
        self.r.config_set("tls-ca-cert-file", self.certs.other_ca)
        p = gpuq("stats", "--redis", self.redis.url, "--redis-ca", ca, "--redis-cert", cert, "--redis-key", key)
        self.assertEqual(p.returncode, 2, p.stderr)
        self.r.config_set("tls-ca-cert-file", ca)
        # the worker's from its environment, the command's from flags
        w = self.worker(env={"GPUQ_REDIS_CA": ca, "GPUQ_REDIS_CERT": cert, "GPUQ_REDIS_KEY": key})
        self.assertEqual(self.run_job("mtls")["status"], "ok")
        p = gpuq("enqueue", "--redis", self.redis.url, "--redis-ca", ca, "--redis-cert", cert, "--redis-key", key,
                 "--op", "mlp", "--model", "m", "--input", "x=rand:1x16", "--count", "5", "--wait", "20", "--quiet")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("5 results (5 ok, 0 errors)", p.stdout)
        self.assertEqual(w.stop(), 0)


class Reconnect(TLSTest):
    def test_client_kill_and_a_bad_certificate_during_a_run(self):
        w = self.worker("--redis-ca", self.certs.ca)
        self.assertEqual(self.run_job("before")["status"], "ok")
        self.r.execute_command("CLIENT", "KILL", "TYPE", "normal")
        self.wait_log(w, "redis: reconnected")
        self.assertEqual(self.run_job("after-kill")["status"], "ok")
        # Redis shows an expired certificate: the worker keeps trying, saying why
        self.serve_cert(self.certs.expired)
        self.r.execute_command("CLIENT", "KILL", "TYPE", "normal")
        self.wait_log(w, "certificate has expired; reconnecting in", count=2)
        self.client.enqueue({"op": "mlp", "model": "m", "inputs": {"x": tensor(np.ones((1, 16), np.float32))},
                             "id": "meanwhile", "reply_to": self.client.key("reply:meanwhile")})
        self.serve_cert(self.certs.server)
        self.wait_log(w, "redis: reconnected", count=2)
        self.assertEqual(self.client.wait(self.client.key("reply:meanwhile"))["status"], "ok")
        self.assertEqual(self.run_job("after-cert")["status"], "ok")
        self.assertEqual(w.stop(), 0)


if __name__ == "__main__":
    unittest.main()
