"""deploy/ against a live worker, so the kit cannot rot silently: the
Deployment's own settings start a worker whose probes answer; every metric
and label the Grafana dashboard queries is on its /metrics; the stream and
consumer group the KEDA ScaledObject names exist, and their lag counts the
jobs waiting."""
import json
import os
import re
import signal
import time
import unittest
import urllib.request

import yaml

from harness import WorkerTest, free_port, make_mlp

DEPLOY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "deploy")


def load(*path):
    with open(os.path.join(DEPLOY, *path)) as f:
        return json.load(f) if path[-1].endswith(".json") else yaml.safe_load(f)


def get(url):
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.status, r.read().decode()


def series(text):
    """Each metric name in a Prometheus text page, with its label names."""
    names = {}
    for line in text.splitlines():
        m = re.match(r"([a-zA-Z_:][\w:]*)(\{([^}]*)\})?\s", line)
        if m and not line.startswith("#"):
            names.setdefault(m.group(1), set()).update(re.findall(r'(\w+)="', m.group(3) or ""))
    return names


def queries(dashboard):
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            yield panel["title"], target["expr"]
    for var in dashboard["templating"]["list"]:
        if var["type"] == "query":
            yield f"variable {var['name']}", var["query"]


class DeployKit(WorkerTest):
    def setUp(self):
        super().setUp()
        self.dep = load("kubernetes", "deployment.yaml")
        self.container = self.dep["spec"]["template"]["spec"]["containers"][0]
        self.env = {e["name"]: e["value"] for e in self.container["env"] if "value" in e}
        model = self.env["GPUQ_MODEL"].split("=", 1)[0]
        make_mlp(self.path("m.safetensors"), [4, 8, 4])
        self.port = free_port()
        # the Deployment's settings, with this test's Redis, model file and a loopback port
        env = dict(self.env, GPUQ_MODEL=f"{model}={self.path('m.safetensors')}",
                   GPUQ_METRICS_ADDR=f"127.0.0.1:{self.port}")
        self.w = self.worker(env=env)
        self.model, self.queue = model, self.env["GPUQ_QUEUE"]

    def run_job(self):
        reply = f"gpuq:{{{self.queue}}}:reply:deploy"
        self.client.enqueue({"op": "mlp", "model": self.model, "reply_to": reply,
                             "inputs": {"x": {"dtype": "f32", "shape": [1, 4], "data": bytes(16)}}}, queue=self.queue)
        self.assertEqual(self.client.wait(reply)["status"], "ok")

    def test_deployment(self):
        ports = {p["name"]: p["containerPort"] for p in self.container["ports"]}
        self.assertEqual(self.env["GPUQ_METRICS_ADDR"].rsplit(":", 1)[1], str(ports["metrics"]))
        annotations = self.dep["spec"]["template"]["metadata"]["annotations"]
        self.assertEqual(annotations["prometheus.io/port"], str(ports["metrics"]))
        for probe in ("readinessProbe", "livenessProbe"):
            http = self.container[probe]["httpGet"]
            self.assertEqual(http["port"], "metrics")
            self.assertEqual(get(f"http://127.0.0.1:{self.port}{http['path']}")[0], 200, probe)
        self.assertEqual(get(f"http://127.0.0.1:{self.port}{annotations['prometheus.io/path']}")[0], 200)
        self.run_job()

    def test_dashboard_queries_live_metrics(self):
        self.run_job()
        # a job is counted once the worker has read Redis's answer to its
        # write, which may be just after the client sees the result
        deadline = time.time() + 10
        while True:
            live = series(get(f"http://127.0.0.1:{self.port}/metrics")[1])
            if "gpuq_total_seconds_bucket" in live or time.time() > deadline:
                break
            time.sleep(0.05)
        checked = 0
        for where, expr in queries(load("grafana", "gpuq-dashboard.json")):
            names = set(re.findall(r"\b(?:gpuq|process)_\w+", expr))
            self.assertTrue(names, f"{where}: {expr} queries no gpuq metric")
            for name in names:
                self.assertIn(name, live, f"{where}: {name} is not on a live worker's /metrics")
            labels = set().union(*(live[n] for n in names))
            used = set(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)\s*\"", expr))
            for group in re.findall(r"\bby\s*\(([^)]*)\)", expr):
                used.update(x.strip() for x in group.split(",") if x.strip())
            used.update(re.findall(r"label_values\(\s*\w+\s*,\s*(\w+)\s*\)", expr))
            for label in used:
                self.assertIn(label, labels, f"{where}: no label {label} on {sorted(names)}")
            checked += 1
        self.assertGreater(checked, 5)

    def test_scaledobject_names_the_workers_keys(self):
        so = load("kubernetes", "keda-scaledobject.yaml")
        self.assertEqual(so["spec"]["scaleTargetRef"]["name"], self.dep["metadata"]["name"])
        (trigger,) = so["spec"]["triggers"]
        self.assertEqual(trigger["type"], "redis-streams")
        meta = trigger["metadata"]
        self.assertIn(meta["passwordFromEnv"], {e["name"] for e in self.container["env"]})
        stream, group = meta["stream"], meta["consumerGroup"]
        self.assertEqual(stream, f"gpuq:{{{self.queue}}}:jobs", "the queue the Deployment serves")
        self.run_job()   # acknowledged and deleted: the lag must still be exact
        self.assertEqual(self.r.type(stream), b"stream")
        self.assertIn(group, [g["name"].decode() for g in self.r.xinfo_groups(stream)])
        # what the scaler reads: jobs that no worker has taken yet
        self.assertEqual(self.w.stop(signal.SIGTERM), 0)
        for _ in range(3):
            self.client.enqueue({"op": "mlp", "model": self.model,
                                 "inputs": {"x": {"dtype": "f32", "shape": [1, 4], "data": bytes(16)}}},
                                queue=self.queue)
        (info,) = [g for g in self.r.xinfo_groups(stream) if g["name"].decode() == group]
        self.assertEqual(info["lag"], 3)
        self.assertGreater(int(meta["lagCount"]), 0)


if __name__ == "__main__":
    unittest.main()
