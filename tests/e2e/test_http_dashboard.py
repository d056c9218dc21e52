"""The dashboard in a real browser: headless Chromium (Debian's chromium and
chromium-driver) driven by selenium from the clean venv
(dashboard_driver.py) loads it, is refused without a key, sees a backlog
grow and drain, and retries a dead letter with a click. Screenshots of each
state are kept under build/test-artifacts/dashboard/."""
import json
import os
import shutil
import subprocess
import unittest

from harness import GPUQ, WorkerTest
from httpfront import Front, client_venv, key_file, run_in_venv  # noqa: F401

SHOTS = os.path.join(os.path.dirname(os.path.abspath(GPUQ)), "test-artifacts", "dashboard")
DRIVER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "dashboard_driver.py")


class Dashboard(WorkerTest):
    def test_in_chromium(self):
        if not (shutil.which("chromium") and shutil.which("chromedriver")):
            self.skipTest("no chromium and chromium-driver (scripts/setup installs them)")
        py = client_venv()
        if py is None:
            self.skipTest("no wheels in .cache/pypi-http (scripts/setup fetches them)")
        os.makedirs(SHOTS, exist_ok=True)
        keys = key_file(self.path("keys"), [("dash-key", "write", None)])
        front = Front(self.redis.url, "--api-key-file", keys)
        try:
            args = json.dumps({"url": front.url, "key": "dash-key", "redis": self.redis.port, "gpuq": GPUQ,
                               "shots": SHOTS})
            env = dict(os.environ, NO_PROXY="*", no_proxy="*")
            p = subprocess.run([py, DRIVER, args], capture_output=True, text=True, timeout=180, env=env)
            self.assertEqual(p.returncode, 0, p.stdout + p.stderr[-3000:])
            seen = json.loads(p.stdout.strip().splitlines()[-1])
        finally:
            front.stop()
        self.assertIn("401", seen["refused"])
        self.assertIn("API key", seen["refused"])
        self.assertEqual(seen["backlog"], 25)
        self.assertTrue(seen["drained"])
        self.assertEqual(seen["workers"], 1)
        p50, p99 = (float(x) for x in seen["latency"].split(" / "))    # the 25 jobs, enqueue to result
        self.assertTrue(0 < p50 <= p99, seen["latency"])
        self.assertIn("worker died 5 times", seen["dead_text"])
        self.assertTrue(seen["retried"])
        self.assertIn("retried", seen["status"])
        for shot in ("1-refused-without-key", "2-backlog", "3-drained", "4-dead-letter", "5-retried"):
            self.assertGreater(os.path.getsize(os.path.join(SHOTS, shot + ".png")), 1000)


if __name__ == "__main__":
    unittest.main()
