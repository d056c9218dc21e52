"""What an operator reads: JSON log lines with the job's fields, /metrics as
promtool accepts it (op and model labels, build and process metrics, no
sentences in labels), and the client commands' --json, errors and numbers."""
import json
import os
import shutil
import subprocess
import time
import unittest
import urllib.request

import msgpack
import numpy as np

from harness import WorkerTest, free_port, make_mlp, tensor
from test_cli import run
from test_metrics import get, metric, parse

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
PROMTOOL = os.environ.get("PROMTOOL") or shutil.which("promtool") or \
    os.path.join(ROOT, ".cache", "prometheus", "usr", "bin", "promtool")


def records(text):
    return [json.loads(l) for l in text.splitlines() if l.strip()]


class Operator(WorkerTest):
    def setUp(self):
        super().setUp()
        make_mlp(self.path("m.safetensors"), [4, 3])
        self.x = tensor(np.ones((1, 4), np.float32))

    def serve(self, *args):
        self.port = free_port()
        return self.worker("--model", f"m={self.path('m.safetensors')}", "--metrics-addr",
                           f"127.0.0.1:{self.port}", *args)

    def scrape(self, want_jobs):
        deadline = time.time() + 10
        while time.time() < deadline:
            text = get(f"http://127.0.0.1:{self.port}/metrics")[1]
            if sum(v for (n, l), v in parse(text).items() if n == "gpuq_total_seconds_count") >= want_jobs:
                return text
            time.sleep(0.1)
        self.fail("the jobs were not counted:\n" + text)

    def test_json_log_carries_the_jobs_fields(self):
        w = self.serve("--log-format", "json")
        reply = self.client.key("reply:log")
        self.client.enqueue({"op": "mlp", "model": "nope", "id": "j1", "inputs": {"x": self.x}, "reply_to": reply})
        self.client.enqueue({"op": "mlp", "model": "m", "id": "j2", "inputs": {"x": self.x}, "reply_to": reply})
        self.client.enqueue(None, raw=b"garbage")
        self.client.wait(reply), self.client.wait(reply)
        deadline = time.time() + 10
        while time.time() < deadline and "dead letter" not in w.output():
            time.sleep(0.05)
        out = w.output()
        w.stop()
        lines = records(out)
        failed = [r for r in lines if r.get("job_id") == "j1"]
        self.assertEqual(len(failed), 1, out)
        self.assertEqual(failed[0]["level"], "info")
        self.assertEqual({k: failed[0][k] for k in ("queue", "op", "model", "code")},
                         {"queue": "default", "op": "mlp", "model": "nope", "code": "unknown_model"})
        self.assertFalse([r for r in lines if r.get("job_id") == "j2"], "an ok job is not logged")
        dead = [r for r in lines if "dead letter" in r["msg"]]
        self.assertEqual(len(dead), 1, out)
        self.assertEqual((dead[0]["queue"], dead[0]["code"]), ("default", "bad_request"))

    def test_text_log_names_the_fields(self):
        w = self.serve()
        reply = self.client.key("reply:text")
        self.client.enqueue({"op": "mlp", "model": "nope", "id": "t1", "inputs": {"x": self.x}, "reply_to": reply})
        self.client.wait(reply)
        deadline = time.time() + 5
        while time.time() < deadline and "job failed" not in w.output():
            time.sleep(0.05)
        line = [l for l in w.output().splitlines() if "job failed" in l]
        self.assertEqual(len(line), 1, w.output())
        self.assertIn(" info ", line[0])
        self.assertIn("[job_id=t1 queue=default op=mlp model=nope code=unknown_model]", line[0])

    def test_metrics_pass_promtool_with_op_and_model_labels(self):
        self.assertTrue(os.access(PROMTOOL, os.X_OK), f"no promtool at {PROMTOOL}: run scripts/setup")
        self.serve()
        reply = self.client.key("reply:m")
        for model in ("m", "m", "nope"):
            self.client.enqueue({"op": "mlp", "model": model, "inputs": {"x": self.x}, "reply_to": reply})
        self.client.enqueue({"op": "softmax", "inputs": {"x": self.x}, "reply_to": reply})
        for _ in range(4):
            self.client.wait(reply)
        text = self.scrape(4)
        p = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr + text)
        ms = parse(text)
        self.assertEqual(metric(ms, "gpuq_total_seconds_count", op="mlp", model="m"), 2)
        self.assertEqual(metric(ms, "gpuq_total_seconds_count", op="mlp", model=""), 1, "an unknown model")
        self.assertEqual(metric(ms, "gpuq_total_seconds_count", op="softmax", model=""), 1)
        self.assertEqual(metric(ms, "gpuq_compute_seconds_count", op="mlp", model="m"), 2)
        self.assertEqual(metric(ms, "gpuq_batch_rows_sum", op="mlp", model="m"), 2)
        self.assertEqual(metric(ms, "gpuq_batch_rows_bucket", op="softmax", model="", le="+Inf"), 1)
        self.assertFalse([l for (n, l) in ms if n == "gpuq_total_seconds_count" and dict(l)["model"] == "nope"],
                         "a job's unknown model name is not a label value")
        build = [dict(l) for (n, l) in ms if n == "gpuq_build_info"]
        self.assertEqual(len(build), 1)
        out = run("version").stdout.split()[1]
        self.assertEqual(build[0]["version"], out)
        (device,) = [dict(l)["device"] for (n, l) in ms if n == "gpuq_backend_info"]
        for sentence in (";", "no CUDA", "without"):
            self.assertNotIn(sentence, device)
        self.assertGreater(metric(ms, "process_resident_memory_bytes"), 1 << 20)
        self.assertGreater(metric(ms, "process_open_fds"), 3)
        self.assertGreater(metric(ms, "process_cpu_seconds_total"), 0)
        self.assertLess(abs(metric(ms, "process_start_time_seconds") - time.time()), 120)

    def test_metrics_addr_port_alone_listens_everywhere(self):
        port = free_port()
        self.worker("--metrics-addr", f":{port}")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
            self.assertEqual(r.status, 200)
        listening = []
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            if os.path.exists(table):
                with open(table) as f:
                    for row in f.read().splitlines()[1:]:
                        local, state = row.split()[1], row.split()[3]
                        addr, hexport = local.split(":")
                        if int(hexport, 16) == port and state == "0A":
                            listening.append(addr)
        self.assertTrue(listening)
        self.assertTrue(all(set(a) == {"0"} for a in listening), f"a wildcard address, not {listening}")


class Commands(WorkerTest):
    def cli(self, *args):
        return run(*args, "--redis", self.redis.url)

    def test_stats_json_and_a_missing_queue(self):
        p = self.cli("stats", "--queue", "nosuch")
        self.assertEqual(p.returncode, 1)
        self.assertIn("no queue nosuch", p.stderr)
        self.assertIn("gpuq:{nosuch}:jobs", p.stderr)
        p = self.cli("stats", "--queue", "nosuch", "--json")
        self.assertEqual(p.returncode, 1)
        self.assertEqual(json.loads(p.stdout)["exists"], False)
        make_mlp(self.path("m.safetensors"), [4, 2])
        for i in range(3):
            self.client.enqueue({"op": "mlp", "model": "m", "inputs": {"x": tensor(np.ones((1, 4), np.float32))}})
        p = self.cli("stats", "--json", "--window", "0.1")
        self.assertEqual(p.returncode, 0, p.stderr)
        s = json.loads(p.stdout)
        self.assertEqual((s["queue"], s["exists"], s["length"], s["dead_letters"], s["consumers"]),
                         ("default", True, 3, 0, []))

    def test_wait_json(self):
        make_mlp(self.path("m.safetensors"), [4, 2])
        self.worker("--model", f"m={self.path('m.safetensors')}")
        self.client.enqueue({"op": "mlp", "model": "m", "id": "w1", "inputs": {"x": tensor(np.ones((1, 4), np.float32))}})
        p = self.cli("wait", "w1", "--json", "--timeout", "10")
        self.assertEqual(p.returncode, 0, p.stderr)
        res = json.loads(p.stdout)
        self.assertEqual((res["id"], res["status"], res["outputs"]["y"]["shape"]), ("w1", "ok", [1, 2]))

    def test_dead_list_json_and_bad_ids(self):
        self.client.enqueue(None, raw=b"garbage")
        self.worker()
        deadline = time.time() + 10
        while self.r.xlen("gpuq:{default}:dead") < 1 and time.time() < deadline:
            time.sleep(0.02)
        p = self.cli("dead", "list", "--json")
        self.assertEqual(p.returncode, 0, p.stderr)
        (letter,) = json.loads(p.stdout)
        self.assertEqual((letter["code"], letter["job_format"], letter["job_bytes"]), ("bad_request", "undecodable", 7))
        self.assertEqual(self.r.xrange("gpuq:{default}:dead")[0][0].decode(), letter["id"])
        for bad in ("abc", "12-x", "1-2-3", "5-", "1 2"):
            p = self.cli("dead", "retry", bad)
            self.assertEqual(p.returncode, 2, bad)
            self.assertIn(f"'{bad}' is not a dead letter id", p.stderr)
            self.assertNotIn("ERR", p.stderr)
        self.assertEqual(self.r.xlen("gpuq:{default}:dead"), 1)

    def test_enqueue_meta_json_is_a_map(self):
        self.cli("enqueue", "--op", "mlp", "--input", "x=rand:1x4", "--meta", '{"user": "ann", "n": [1, 2]}')
        self.cli("enqueue", "--op", "mlp", "--input", "x=rand:1x4", "--meta", "plain text")
        jobs = [msgpack.unpackb(f[b"job"], raw=False) for _, f in self.r.xrange("gpuq:{default}:jobs")]
        self.assertEqual([j["meta"] for j in jobs], [{"user": "ann", "n": [1, 2]}, "plain text"])

    def test_connection_errors_name_host_and_port(self):
        port = free_port()
        for cmd in (["stats"], ["wait", "x"], ["dead", "list"], ["enqueue", "--op", "mlp"]):
            p = run(*cmd, "--redis", f"redis://127.0.0.1:{port}")
            self.assertEqual(p.returncode, 2, cmd)
            self.assertIn(f"cannot connect to Redis at 127.0.0.1:{port}", p.stderr, cmd)
        p = run("worker", "--redis", f"redis://:secret@127.0.0.1:{port}", "--backend", "cpu")
        self.assertIn(f"127.0.0.1:{port}", p.stderr)
        self.assertNotIn("secret", p.stderr)

    def test_bad_numbers_name_the_flag_and_why(self):
        cases = [(["stats", "--window", "0"], "--window '0': want a number above 0"),
                 (["stats", "--window", "soon"], "--window 'soon'"),
                 (["wait", "x", "--timeout", "-1"], "--timeout '-1': want a number from 0 to"),
                 (["dead", "list", "--count", "0"], "--count '0': want an integer from 1 to"),
                 (["dead", "list", "--count", "2.5"], "--count '2.5': want an integer"),
                 (["enqueue", "--op", "mlp", "--count", "0"], "--count '0': want an integer from 1 to"),
                 (["enqueue", "--op", "mlp", "--timeout-ms", "0"], "--timeout-ms '0': want an integer above 0"),
                 (["enqueue", "--op", "mlp", "--wait", "x"], "--wait 'x': want a number"),
                 (["enqueue", "--op", "mlp", "--result-ttl", "-3"], "--result-ttl '-3': want an integer"),
                 (["enqueue", "--op", "mlp", "--priority", "high"], "--priority 'high': want an integer"),
                 (["bench-compute", "--model", "m", "--jobs", "0"], "--jobs '0': want an integer from 1 to"),
                 (["bench-compute", "--model", "m", "--batch", "lots"], "--batch 'lots'"),
                 (["bench-compute", "--model", "m", "--cpu-threads", "-2"], "--cpu-threads '-2'"),
                 (["worker", "--max-batch", "0"], "--max-batch: '0' is not an integer in [1")]
        for args, why in cases:
            p = self.cli(*args)
            self.assertEqual(p.returncode, 2, args)
            self.assertIn(why, p.stderr, args)
            self.assertEqual(len(p.stderr.strip().splitlines()), 1, p.stderr)


if __name__ == "__main__":
    unittest.main()
