"""Redis misbehaving as production Redis does, while the worker is busy:
memory running out in the middle of a drain and coming back, connections
killed again and again. The worker resumes on its own, and a live worker's
own re-reads are never taken for deliveries to workers that died."""
import time
import unittest

import msgpack
import numpy as np

from harness import WorkerTest, make_mlp, tensor


class Faults(WorkerTest):
    def setUp(self):
        super().setUp()
        make_mlp(self.path("m.safetensors"), [16, 64, 8], seed=3)
        self.reply = self.client.key("reply:r")

    def model(self):
        return ["--model", f"m={self.path('m.safetensors')}"]

    def enqueue_many(self, n, rows=1, reply=True):
        x = tensor(np.ones((rows, 16), np.float32))
        pipe = self.r.pipeline(transaction=False)
        for i in range(n):
            job = {"op": "mlp", "model": "m", "id": f"j{i}", "inputs": {"x": x}}
            if reply:
                job["reply_to"] = self.reply
            pipe.xadd(self.client.key("jobs"), {"job": msgpack.packb(job)})
            if i % 1000 == 999:
                pipe.execute()
        pipe.execute()

    def drained(self):
        return (self.r.xlen(self.client.key("jobs")) == 0 and
                self.r.xpending(self.client.key("jobs"), "workers")["pending"] == 0)

    def test_out_of_memory_reached_mid_drain_then_freed(self):
        """The limit is reached while batches are in flight (results refused
        with reads already sent behind them); once memory is freed the worker
        serves the rest within a second."""
        n = 6000
        self.enqueue_many(n, reply=False)
        self.r.config_set("maxmemory-policy", "noeviction")
        self.r.config_set("maxmemory", self.r.info("memory")["used_memory"] + (1 << 20))
        w = self.worker(*self.model())
        self.wait_for(lambda: "redis refused the results (OOM" in w.output(), what="a refusal")
        time.sleep(1.5)     # several refusals, each with a read behind it
        self.assertIsNone(w.proc.poll(), "the worker died while Redis was out of memory:\n" + w.output())
        answered = len(self.r.keys(self.client.key("result:*")))
        self.assertLess(answered, n, "the limit was never reached")
        self.r.config_set("maxmemory", 0)
        t_free = time.time()
        self.wait_for(lambda: len(self.r.keys(self.client.key("result:*"))) > answered, timeout=5,
                      what="the first result after memory was freed")
        # it looks every 250 ms; 1.5 s leaves a loaded machine its margin
        self.assertLess(time.time() - t_free, 1.5, "resumed too late after memory was freed")
        self.wait_for(self.drained, timeout=60, what="the drain")
        self.assertEqual(len(self.r.keys(self.client.key("result:*"))), n)
        self.assertEqual(self.r.xlen(self.client.key("dead")), 0)
        self.assertIn("redis takes writes again", w.output())
        self.assertEqual(w.stop(), 0)

    def kill_connections(self, w, times, every):
        """Kills the worker's connections times times, each after it came back."""
        me = self.r.client_id()
        for _ in range(times):
            self.wait_for(lambda: len([c for c in self.r.client_list() if int(c["id"]) != me]) > 0,
                          what="the worker's connection")
            self.r.execute_command("CLIENT", "KILL", "TYPE", "normal")
            time.sleep(every)
            self.assertIsNone(w.proc.poll(), w.output())

    def test_reconnects_are_not_deliveries(self):
        """Jobs held across many reconnects of one live worker are re-read
        each time, and are still run, not dead-lettered as poison."""
        self.enqueue_many(4)
        w = self.worker(*self.model(), "--max-attempts", "2", "--max-delay-us", "2000000")
        self.kill_connections(w, 6, 0.3)
        for _ in range(4):
            res = self.client.wait(self.reply)
            self.assertEqual(res["status"], "ok", res.get("error"))
        self.assertEqual(self.r.xlen(self.client.key("dead")), 0, w.output())
        self.assertGreaterEqual(w.output().count("reconnected"), 5, w.output())
        self.wait_for(self.drained, what="the acks")

    def test_restart_under_the_same_name_still_counts(self):
        """A worker that restarts under its name after dying on a job still
        sees the deliveries grow, reconnects or not: the job is dead-lettered
        once it passes --max-attempts, with no op named for it in the log."""
        self.enqueue_many(1)
        self.r.xgroup_create(self.client.key("jobs"), "workers", id="0")
        for _ in range(3):  # three lives of "fixed" died on it
            self.r.xreadgroup("workers", "fixed", {self.client.key("jobs"): "0" if _ else ">"})
        w = self.worker(*self.model(), "--consumer", "fixed", "--max-attempts", "3")
        self.wait_for(lambda: self.r.xlen(self.client.key("dead")) == 1, what="a dead letter")
        fields = self.r.xrange(self.client.key("dead"))[0][1]
        self.assertEqual(fields[b"attempts"], b"4")
        line = next(l for l in w.output().splitlines() if "dead letter" in l)
        self.assertNotIn("op=", line, "the entry was never decoded: no op to name")

    def test_storm_of_killed_connections_loses_nothing(self):
        """Two workers drain while every connection is killed every 100 ms:
        once the storm ends every job is answered, none dead-lettered."""
        n = 3000
        self.enqueue_many(n, rows=8, reply=False)
        ws = [self.worker(*self.model(), "--max-attempts", "2") for _ in range(2)]
        t0 = time.time()
        while time.time() - t0 < 8:
            self.r.execute_command("CLIENT", "KILL", "TYPE", "normal")
            time.sleep(0.1)
        self.wait_for(self.drained, timeout=60, what="the drain")
        self.assertEqual(self.r.xlen(self.client.key("dead")), 0,
                         "\n".join(l for l in ws[0].output().splitlines() if "dead" in l)[:2000])
        self.assertEqual(len(self.r.keys(self.client.key("result:*"))), n)
        for w in ws:
            self.assertEqual(w.stop(), 0)


if __name__ == "__main__":
    unittest.main()
