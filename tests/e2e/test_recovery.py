"""Nothing lost, with real processes: workers killed with SIGKILL mid-batch,
poison entries, entries deleted while pending, Redis restarted under a
worker, SIGTERM draining what the worker holds."""
import signal
import time
import unittest

import msgpack
import numpy as np
import redis

from harness import WorkerTest, make_mlp, tensor


class Recovery(WorkerTest):
    def setUp(self):
        super().setUp()
        make_mlp(self.path("m.safetensors"), [256, 1024, 256], seed=1)
        self.reply = self.client.key("reply:r")
        self.jobs_key = self.client.key("jobs")

    def model(self):
        return ["--model", f"m={self.path('m.safetensors')}"]

    def enqueue(self, n, rows=8):
        x = tensor(np.ones((rows, 256), np.float32))
        pipe = self.r.pipeline(transaction=False)
        for i in range(n):
            pipe.xadd(self.jobs_key, {"job": msgpack.packb(
                {"op": "mlp", "model": "m", "inputs": {"x": x}, "id": f"j{i}", "reply_to": self.reply})})
        pipe.execute()

    def drain_ids(self, n, timeout=60):
        """Results until all n ids are seen (repeats allowed: at least once)."""
        ids, deadline = set(), time.time() + timeout
        while len(ids) < n and time.time() < deadline:
            item = self.r.blpop([self.reply], timeout=1)
            if item:
                res = msgpack.unpackb(item[1])
                self.assertEqual(res["status"], "ok", res.get("error"))
                ids.add(res["id"])
        return ids

    def wait_pending_zero(self, timeout=20):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.r.xpending(self.jobs_key, "workers")["pending"] == 0:
                return True
            time.sleep(0.05)
        return False

    def test_sigkill_loses_nothing(self):
        n = 600
        self.enqueue(n)
        kills = 0
        for _ in range(3):     # repeatedly killed mid-batch
            w = self.worker(*self.model(), "--claim-idle-ms", "300", "--max-batch", "64")
            while self.r.llen(self.reply) < 20 * (kills + 1):
                time.sleep(0.005)
            w.proc.send_signal(signal.SIGKILL)
            w.proc.wait()
            kills += 1
        self.assertGreater(self.r.xpending(self.jobs_key, "workers")["pending"], 0,
                           "the killed workers should have left entries pending")
        self.worker(*self.model(), "--claim-idle-ms", "300")
        ids = self.drain_ids(n)
        lost = n - len(ids)
        print(f"\nSIGKILL x{kills}: {lost} of {n} jobs lost")
        self.assertEqual(lost, 0)
        self.assertTrue(self.wait_pending_zero())

    def test_poison_entry_is_dead_lettered(self):
        x = tensor(np.ones((1, 256), np.float32))
        entry = self.client.enqueue({"op": "mlp", "model": "m", "inputs": {"x": x}, "reply_to": self.reply})
        self.r.xgroup_create(self.jobs_key, "workers", id="0")
        self.r.xreadgroup("workers", "ghost-1", {self.jobs_key: ">"})     # delivery 1
        for i in range(2):                                                  # deliveries 2, 3
            self.r.xclaim(self.jobs_key, "workers", f"ghost-{i + 2}", 0, [entry])
        time.sleep(0.3)     # already stale when the worker starts: claimed on its first fetch
        self.worker(*self.model(), "--claim-idle-ms", "100", "--max-attempts", "3")
        deadline = time.time() + 10
        while self.r.xlen(self.client.key("dead")) == 0 and time.time() < deadline:
            time.sleep(0.05)
        dead = self.r.xrange(self.client.key("dead"))
        self.assertEqual(len(dead), 1)
        fields = dead[0][1]
        self.assertEqual(fields[b"attempts"], b"4")
        self.assertEqual(msgpack.unpackb(fields[b"error"])["code"], "internal")
        self.assertTrue(fields[b"job"])
        self.assertIsNone(self.r.lpop(self.reply), "a poison job must not run")
        self.assertTrue(self.wait_pending_zero())

    def test_below_max_attempts_runs(self):
        x = tensor(np.ones((1, 256), np.float32))
        self.client.enqueue({"op": "mlp", "model": "m", "inputs": {"x": x}, "reply_to": self.reply, "id": "again"})
        self.r.xgroup_create(self.jobs_key, "workers", id="0")
        self.r.xreadgroup("workers", "ghost", {self.jobs_key: ">"})
        self.worker(*self.model(), "--claim-idle-ms", "100", "--max-attempts", "3")
        self.assertEqual(self.client.wait(self.reply)["id"], "again")
        self.assertTrue(self.wait_pending_zero())

    def test_deleted_while_pending(self):
        x = tensor(np.ones((1, 256), np.float32))
        entry = self.client.enqueue({"op": "mlp", "model": "m", "inputs": {"x": x}, "reply_to": self.reply})
        self.r.xgroup_create(self.jobs_key, "workers", id="0")
        self.r.xreadgroup("workers", "ghost", {self.jobs_key: ">"})
        self.r.xdel(self.jobs_key, entry)
        w = self.worker(*self.model(), "--claim-idle-ms", "100")
        self.assertTrue(self.wait_pending_zero())
        # the worker is alive and serving
        self.client.enqueue({"op": "mlp", "model": "m", "inputs": {"x": x}, "reply_to": self.reply, "id": "after"})
        self.assertEqual(self.client.wait(self.reply)["id"], "after")
        self.assertEqual(self.r.xlen(self.client.key("dead")), 0)
        self.assertIsNone(w.proc.poll())

    def test_redis_restart(self):
        x = tensor(np.ones((1, 256), np.float32))
        w = self.worker(*self.model())
        self.client.enqueue({"op": "mlp", "model": "m", "inputs": {"x": x}, "reply_to": self.reply, "id": "before"})
        self.assertEqual(self.client.wait(self.reply)["id"], "before")
        self.redis.kill()
        time.sleep(0.5)
        self.redis.start()      # same port, empty: the group is gone (NOGROUP)
        r = redis.Redis(port=self.redis.port)
        deadline, got = time.time() + 20, None
        while got is None and time.time() < deadline:
            try:
                r.xadd(self.jobs_key, {"job": msgpack.packb(
                    {"op": "mlp", "model": "m", "inputs": {"x": x}, "reply_to": self.reply, "id": "after"})})
                got = r.blpop([self.reply], timeout=2)
            except redis.ConnectionError:
                time.sleep(0.1)
        self.assertIsNotNone(got, "the worker did not serve again after Redis came back\n" + w.output())
        self.assertEqual(msgpack.unpackb(got[1])["id"], "after")
        self.assertIsNone(w.proc.poll())
        self.assertIn("reconnect", w.output())

    def test_sigterm_drains(self):
        self.enqueue(300)
        w = self.worker(*self.model(), "--max-batch", "32", "--consumer", "drainer")
        while self.r.llen(self.reply) < 10:
            time.sleep(0.005)
        self.assertEqual(w.stop(signal.SIGTERM), 0)
        self.assertEqual(self.r.xpending(self.jobs_key, "workers")["pending"], 0,
                         "in-flight jobs must be written and acked")
        consumers = [c["name"] for c in self.r.xinfo_consumers(self.jobs_key, "workers")]
        self.assertNotIn(b"drainer", consumers, "a clean stop with nothing pending leaves the group")
        answered = self.r.llen(self.reply)
        self.assertEqual(answered, self.r.xinfo_groups(self.jobs_key)[0]["entries-read"])


if __name__ == "__main__":
    unittest.main()
