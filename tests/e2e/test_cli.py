"""The command line as operators and scripts use it: start-up errors exit 2
with one line, flags and GPUQ_* variables, SIGTERM, queue order, `gpuq enqueue`."""
import json
import os
import signal
import subprocess
import tempfile
import time
import unittest

import numpy as np

from harness import GPUQ, Client, WorkerTest, free_port, from_tensor, make_mlp, mlp_ref, tensor


def run(*args, env=None, timeout=30):
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([GPUQ, *args], capture_output=True, text=True, env=e, timeout=timeout)


class StartupErrors(WorkerTest):
    def assert_exit2(self, args, env=None, mention=""):
        p = run("worker", "--redis", self.redis.url, *args, env=env)
        self.assertEqual(p.returncode, 2, p.stderr)
        lines = p.stderr.strip().splitlines()
        self.assertEqual(len(lines), 1, p.stderr)
        self.assertIn(mention, lines[0])
        # nothing was taken from the queue
        self.assertEqual(self.r.xlen("gpuq:{default}:jobs"), 0)

    def test_exit_2(self):
        self.assert_exit2(["--max-batch", "zero"], mention="--max-batch")
        self.assert_exit2(["--no-such-flag"], mention="--no-such-flag")
        self.assert_exit2(["--backend", "tpu"], mention="tpu")
        self.assert_exit2(["--model", "m=/nonexistent.safetensors"], mention="/nonexistent.safetensors")
        with open(self.path("bad.safetensors"), "wb") as f:
            f.write(b"\x05\x00\x00\x00\x00\x00\x00\x00{oops")
        self.assert_exit2(["--model", f"m={self.path('bad.safetensors')}"], mention="bad.safetensors")
        self.assert_exit2(["--model", "justaname"], mention="NAME=PATH")
        self.assert_exit2(["--precision", "f8"], mention="--precision 'f8'")
        self.assert_exit2(["--mlp-precision", "f8"], mention="--precision 'f8'")   # its former name
        self.assert_exit2([], env={"GPUQ_FAULT": "melt=1"}, mention="fault spec")
        self.assert_exit2([], env={"GPUQ_MAX_DELAY_US": "-5"}, mention="GPUQ_MAX_DELAY_US")
        p = run("worker", "--redis", f"redis://127.0.0.1:{free_port()}", "--backend", "cpu")
        self.assertEqual(p.returncode, 2)
        self.assertIn("cannot use Redis", p.stderr)
        p = run("worker", "--redis", "http://x")
        self.assertEqual(p.returncode, 2)
        self.assertIn("bad Redis URL", p.stderr)

    def test_help_and_version(self):
        p = run("worker", "--help")
        self.assertEqual(p.returncode, 0)
        for flag in ("--redis", "--queue", "--max-batch", "--max-delay-us", "--result-ttl", "--consumer"):
            self.assertIn(flag, p.stdout)
        for cmd in ("enqueue", "dead", "stats", "wait", "bench-compute"):
            p = run(cmd, "--help")
            self.assertEqual(p.returncode, 0, cmd)
            self.assertIn("usage: gpuq " + cmd, p.stdout)
        self.assertEqual(run("version").returncode, 0)
        self.assertIn("worker", run("--help").stdout)
        self.assertEqual(run("frobnicate").returncode, 2)

    def test_bench_compute_runs_batches_in_turn(self):
        with tempfile.TemporaryDirectory() as tmp:
            model = os.path.join(tmp, "m.safetensors")
            make_mlp(model, [16, 32, 8])
            # 1000 jobs in batches of 64: the last one short
            p = run("bench-compute", "--model", model, "--jobs", "1000", "--batch", "64")
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertRegex(p.stdout, r"backend=cpu precision=f32 jobs=1000 batch=64 .*jobs_per_s=[1-9]")


class Serving(WorkerTest):
    def test_a_cpu_start_says_each_thing_once_and_calmly(self):
        """No driver jargon for a machine without a GPU, no webhook warning
        without webhooks, no "1 threads"."""
        auto = subprocess.Popen([GPUQ, "worker", "--redis", self.redis.url, "--backend", "auto",
                                 "--cpu-threads", "1"],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        lines = []
        for line in auto.stdout:
            lines.append(line)
            if " ready" in line:
                break
        auto.terminate()
        auto.wait(timeout=20)
        log = "".join(lines)
        self.assertNotIn("insufficient", log)
        self.assertNotIn("unsigned", log)
        self.assertNotRegex(log, r"\b1 threads\b")
        if "backend cpu" in log:
            self.assertRegex(log, r"backend cpu \(.*\)(; no NVIDIA GPU with a driver on this machine)?")

    def test_sigterm_stops_cleanly(self):
        w = self.worker()
        t = time.time()
        self.assertEqual(w.stop(signal.SIGTERM), 0)
        self.assertLess(time.time() - t, 5)

    def test_env_queues_prefix_and_order(self):
        make_mlp(self.path("m.safetensors"), [4, 2])
        hi, lo = Client(self.r, "app", "hi"), Client(self.r, "app", "lo")
        reply = "app:{hi}:reply:order"
        x = tensor(np.ones((1, 4), np.float32))
        # 40 low-priority-queue jobs first, then 40 on the high queue
        for i in range(40):
            lo.enqueue({"op": "mlp", "model": "m", "inputs": {"x": x}, "id": f"lo{i}", "reply_to": reply})
        for i in range(40):
            hi.enqueue({"op": "mlp", "model": "m", "inputs": {"x": x}, "id": f"hi{i}", "reply_to": reply})
        self.worker("--max-batch", "8", env={"GPUQ_QUEUE": "hi,lo", "GPUQ_PREFIX": "app",
                                             "GPUQ_MODEL": f"m={self.path('m.safetensors')}"})
        order = [Client(self.r).wait(reply)["id"] for _ in range(80)]
        self.assertEqual(sorted(order[:40]), sorted(f"hi{i}" for i in range(40)), order)
        self.assertIsNotNone(hi.result("hi0"))
        self.assertIsNotNone(lo.result("lo0"))

    def test_enqueue_cli(self):
        layers = make_mlp(self.path("m.safetensors"), [6, 3])
        self.worker("--model", f"m={self.path('m.safetensors')}")
        x = np.random.default_rng(1).standard_normal((2, 6)).astype(np.float32)
        np.save(self.path("x.npy"), x)
        out = self.path("out")
        p = run("enqueue", "--redis", self.redis.url, "--op", "mlp", "--model", "m",
                "--input", f"x={self.path('x.npy')}", "--id", "cli1", "--meta", "hi",
                "--wait", "10", "--out", out)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("status: ok", p.stdout)
        self.assertIn("output y: f32 [2, 3]", p.stdout)
        np.testing.assert_allclose(np.load(os.path.join(out, "y.npy")), mlp_ref(layers, x), rtol=1e-4, atol=1e-5)
        p = run("enqueue", "--redis", self.redis.url, "--op", "matmul", "--input", "a=rand:2x3",
                "--input", "b=rand:4x5", "--wait", "10")
        self.assertEqual(p.returncode, 1)
        self.assertIn("shape_mismatch", p.stdout)
        p = run("enqueue", "--redis", self.redis.url, "--op", "mlp", "--model", "m",
                "--input", "x=rand:1x6:f16", "--count", "300", "--wait", "20", "--quiet")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("300 results (300 ok, 0 errors)", p.stdout)
        p = run("enqueue", "--redis", self.redis.url, "--op", "mlp", "--input", "x=rand:1x6")
        self.assertEqual(p.returncode, 0)
        self.assertIn("enqueued 1 job", p.stdout)

    def test_dead_list_retry_purge(self):
        make_mlp(self.path("m.safetensors"), [4, 2])
        reply = "gpuq:{default}:reply:dead"
        x = tensor(np.ones((1, 4), np.float32))
        good = self.client.enqueue({"op": "mlp", "model": "m", "inputs": {"x": x}, "id": "revived",
                                    "reply_to": reply})
        # its worker "died" on every delivery: poison
        self.r.xgroup_create("gpuq:{default}:jobs", "workers", id="0")
        self.r.xreadgroup("workers", "ghost", {"gpuq:{default}:jobs": ">"})
        self.client.enqueue(None, raw=b"garbage")
        w = self.worker("--model", f"m={self.path('m.safetensors')}", "--claim-idle-ms", "50",
                        "--max-attempts", "1")
        for _ in range(200):
            if self.r.xlen("gpuq:{default}:dead") == 2:
                break
            time.sleep(0.02)
        p = run("dead", "list", "--redis", self.redis.url)
        self.assertEqual(p.returncode, 0, p.stderr)
        lines = p.stdout.strip().splitlines()
        self.assertEqual(len(lines), 2, p.stdout)
        poison = [l for l in lines if "id revived" in l]
        garbage = [l for l in lines if "undecodable" in l]
        self.assertEqual((len(poison), len(garbage)), (1, 1), lines)
        self.assertIn("internal", poison[0])
        self.assertIn("attempts 2", poison[0])
        self.assertIn("bad_request", garbage[0])
        w.stop()
        # put the poison job back, and serve it with a worker that allows it
        dead_id = poison[0].split()[0]
        p = run("dead", "retry", dead_id, "--redis", self.redis.url)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("retried 1", p.stdout)
        self.worker("--model", f"m={self.path('m.safetensors')}")
        self.assertEqual(Client(self.r).wait(reply)["id"], "revived")
        self.assertNotEqual(good, dead_id)
        p = run("dead", "purge", "--all", "--redis", self.redis.url)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("purged 1", p.stdout)
        self.assertEqual(self.r.xlen("gpuq:{default}:dead"), 0)
        self.assertEqual(run("dead", "retry", "--redis", self.redis.url).returncode, 2)
        self.assertIn("no dead letters", run("dead", "list", "--redis", self.redis.url).stdout)

    def test_stats_wait_and_json_logs(self):
        make_mlp(self.path("m.safetensors"), [4, 2])
        x = tensor(np.ones((1, 4), np.float32))
        for i in range(5):
            self.client.enqueue({"op": "mlp", "model": "m", "inputs": {"x": x}, "id": f"s{i}"})
        self.client.enqueue({"op": "mlp", "model": "zzz", "inputs": {"x": x}, "id": "sbad"})
        p = run("stats", "--redis", self.redis.url, "--window", "0.2")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertRegex(p.stdout, r"stream length\s+6")
        self.assertIn("consumers       0", p.stdout)
        w = self.worker("--model", f"m={self.path('m.safetensors')}", "--log-format", "json",
                        "--consumer", "stats-w")
        p = run("wait", "s4", "--redis", self.redis.url, "--timeout", "10")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("id: s4", p.stdout)
        self.assertEqual(run("wait", "sbad", "--redis", self.redis.url, "--timeout", "10").returncode, 1)
        self.assertEqual(run("wait", "never", "--redis", self.redis.url, "--timeout", "0.3").returncode, 3)
        p = run("stats", "--redis", self.redis.url, "--window", "0.2")
        self.assertRegex(p.stdout, r"backlog\s+0")
        self.assertRegex(p.stdout, r"stats-w\s+pending 0")
        self.assertEqual(w.stop(), 0)

    def test_json_log_lines(self):
        w = self.worker("--log-format", "json")
        out = w.output()
        w.stop()
        records = [json.loads(l) for l in out.splitlines() if l.strip()]
        self.assertTrue(any(r["msg"] == "ready" and r["level"] == "info" for r in records), out)
        self.assertTrue(all(set(r) == {"ts", "level", "msg"} for r in records))


if __name__ == "__main__":
    unittest.main()
