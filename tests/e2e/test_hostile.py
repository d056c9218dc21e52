"""One hostile job or one failing write never hurts the queue: entries leave
the stream with their answer, a job cannot make the queue's keys expire or
crash the worker, one refused push costs only that job its push, Redis out
of memory is waited out on the same connection, and poison is counted even
under a fixed consumer name."""
import os
import subprocess
import time
import unittest

import msgpack
import numpy as np
import redis

from harness import WorkerTest, from_tensor, make_mlp, tensor


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Hostile(WorkerTest):
    def setUp(self):
        super().setUp()
        make_mlp(self.path("m.safetensors"), [16, 8], seed=1)
        self.reply = self.client.key("reply:r")

    def model(self):
        return ["--model", f"m={self.path('m.safetensors')}"]

    def mlp(self, **fields):
        job = {"op": "mlp", "model": "m", "inputs": {"x": tensor(np.ones((1, 16), np.float32))},
               "reply_to": self.reply}
        job.update(fields)
        return job

    def enqueue_many(self, n):
        pipe = self.r.pipeline(transaction=False)
        for i in range(n):
            pipe.xadd(self.client.key("jobs"), {"job": msgpack.packb(self.mlp(id=f"j{i}"))})
        pipe.execute()

    def test_acked_entries_leave_the_stream(self):
        n = 300
        self.enqueue_many(n)
        self.r.config_resetstat()
        self.worker(*self.model(), "--max-batch", "64")
        self.wait_for(lambda: self.r.llen(self.reply) == n, what="all results")
        self.wait_for(lambda: self.r.xlen(self.client.key("jobs")) == 0, what="an empty stream")
        stats = self.r.info("commandstats")
        acks, dels = stats["cmdstat_xack"]["calls"], stats["cmdstat_xdel"]["calls"]
        # one XACK and one XDEL per stream per transaction, each with all its ids
        self.assertEqual(acks, dels)
        self.assertLessEqual(acks, n // 10, f"{acks} XACKs for {n} jobs: not batched")

    def test_reply_to_cannot_name_the_queues_keys(self):
        self.worker(*self.model())
        self.client.enqueue(self.mlp(id="warm"))
        self.client.wait(self.reply)
        for suffix in ["dead", "webhooks"]:
            self.r.xadd(self.client.key(suffix), {"x": "y"})
        for i, suffix in enumerate(["jobs", "dead", "webhooks", "result:warm"]):
            key = self.client.key(suffix)
            self.client.enqueue(self.mlp(id=f"evil{i}", reply_to=key, result_ttl=1))
            self.wait_for(lambda: self.client.result(f"evil{i}") is not None, what="the error result")
            res = self.client.result(f"evil{i}")
            self.assertEqual(res["error"]["code"], "bad_request")
            self.assertIn("own keys", res["error"]["message"])
        for suffix in ["jobs", "dead", "webhooks"]:
            self.assertEqual(self.r.ttl(self.client.key(suffix)), -1, suffix + " was given a TTL")
        self.assertEqual(self.r.type(self.client.key("jobs")), b"stream")

    def test_wrong_type_reply_to_costs_only_its_push(self):
        precious = self.client.key("reply:precious")
        self.r.set(precious, b"keep me")
        self.worker(*self.model(), "--max-delay-us", "200000")
        self.client.enqueue(self.mlp(id="bad", reply_to=precious, result_ttl=5))
        self.client.enqueue(self.mlp(id="good"))
        self.assertEqual(self.client.wait(self.reply)["id"], "good")
        self.wait_for(lambda: self.client.result("bad") is not None, what="the result key")
        self.assertEqual(self.client.result("bad")["status"], "ok")
        self.assertEqual(self.r.get(precious), b"keep me")
        self.assertEqual(self.r.ttl(precious), -1, "a key the worker did not push to got a TTL")
        self.wait_for(lambda: self.r.xpending(self.client.key("jobs"), "workers")["pending"] == 0,
                      what="both jobs acked")

    def test_reply_to_outside_the_acl_costs_only_its_push(self):
        self.r.acl_setuser("gpuq", enabled=True, passwords=["+secret"], keys=["gpuq:*"],
                           commands=["+@all"])
        url = f"redis://gpuq:secret@127.0.0.1:{self.redis.port}"
        self.redis.url = url
        w = self.worker(*self.model(), "--max-delay-us", "200000")
        self.client.enqueue(self.mlp(id="outside", reply_to="elsewhere:list"))
        self.client.enqueue(self.mlp(id="inside"))
        self.assertEqual(self.client.wait(self.reply)["id"], "inside")
        self.wait_for(lambda: self.client.result("outside") is not None, what="the result key")
        self.assertFalse(self.r.exists("elsewhere:list"))
        self.wait_for(lambda: self.r.xpending(self.client.key("jobs"), "workers")["pending"] == 0,
                      what="both jobs acked")
        self.wait_for(lambda: "push refused for 1 job" in w.output(), what="the refusal logged")
        for i in range(20):     # and it serves on
            self.client.enqueue(self.mlp(id=f"after{i}"))
        for _ in range(20):
            self.client.wait(self.reply)

    def test_oversized_result_is_too_large_and_the_rest_is_written(self):
        self.r.config_set("proto-max-bulk-len", 1 << 20)
        self.worker("--max-delay-us", "200000")
        dot = tensor(np.full((1, 1, 1), 7, np.uint8))
        for name, side in (("big", 600), ("small", 10)):   # 600x600 f32: 1.4 MB, over 1 MB
            self.client.enqueue({"op": "image_preprocess", "inputs": {"image": dot}, "id": name,
                                 "params": {"height": side, "width": side}, "reply_to": self.reply})
        got = {}
        for _ in range(2):
            res = self.client.wait(self.reply)
            got[res["id"]] = res
        self.assertEqual(got["big"]["error"]["code"], "too_large")
        self.assertIn("proto-max-bulk-len", got["big"]["error"]["message"])
        self.assertEqual(got["small"]["status"], "ok")

    def test_out_of_memory_backs_off_on_one_connection(self):
        n = 20
        self.enqueue_many(n)
        self.r.xgroup_create(self.client.key("jobs"), "workers", id="0")
        self.r.xgroup_create(self.client.key("webhooks"), "senders", id="0", mkstream=True)
        self.r.set("ballast", b"x" * (8 << 20))
        self.r.config_set("maxmemory-policy", "noeviction")
        self.r.config_set("maxmemory", 2 << 20)
        conns = self.r.info("stats")["total_connections_received"]
        w = self.worker(*self.model())
        t0, cpu0 = time.time(), cpu_seconds(w.proc.pid)
        time.sleep(3)
        cpu = cpu_seconds(w.proc.pid) - cpu0
        log = w.output()
        self.assertEqual(self.r.llen(self.reply), 0)
        self.assertEqual(self.r.xpending(self.client.key("jobs"), "workers")["pending"], n,
                         "nothing is acked without its result")
        tries = log.count("redis refused")
        self.assertGreaterEqual(tries, 3, log)
        self.assertLessEqual(tries, 7, f"{tries} tries in 3 s: not backing off\n{log}")
        self.assertLessEqual(self.r.info("stats")["total_connections_received"] - conns, 1,
                             "the worker reconnected instead of backing off")
        self.assertLess(cpu, 0.5, f"{cpu:.2f} s of CPU in 3 s of backoff")
        self.r.delete("ballast")
        self.r.config_set("maxmemory", 0)
        t_free = time.time()
        self.wait_for(lambda: self.r.llen(self.reply) == n, timeout=5, what="the results")
        resumed = time.time() - t_free
        self.assertLess(resumed, 1.5, f"resumed {resumed:.2f} s after memory was freed")
        self.assertLess(t_free - t0, 10)

    def test_poison_counted_under_a_fixed_consumer_name(self):
        entry = self.client.enqueue(self.mlp(id="poison"))
        self.r.xgroup_create(self.client.key("jobs"), "workers", id="0")
        self.r.xreadgroup("workers", "fixed", {self.client.key("jobs"): ">"})      # delivery 1
        for _ in range(3):  # the same worker name dying on it, again and again
            self.r.xreadgroup("workers", "fixed", {self.client.key("jobs"): "0"})
        self.worker(*self.model(), "--consumer", "fixed", "--max-attempts", "4")
        self.wait_for(lambda: self.r.xlen(self.client.key("dead")) == 1, what="a dead letter")
        fields = self.r.xrange(self.client.key("dead"))[0][1]
        self.assertEqual(fields[b"attempts"], b"5")
        self.assertIsNone(self.r.lpop(self.reply), "a poison job must not run")
        self.assertEqual(self.r.xpending(self.client.key("jobs"), "workers")["pending"], 0)
        self.assertTrue(entry)

    def test_ids_with_control_characters_are_refused(self):
        self.worker(*self.model())
        for bad in ["a\0x", "a\0y", "line\r\nX-Evil: 1"]:
            entry = self.client.enqueue(self.mlp(id=bad))
            res = self.client.wait(self.reply)
            self.assertEqual(res["error"]["code"], "bad_request")
            self.assertEqual(res["id"], entry, "answered under its entry id")
        self.assertFalse(self.r.exists(self.client.key("result:a")))

    def test_huge_timeout_saturates(self):
        self.worker(*self.model())
        self.client.enqueue(self.mlp(id="patient", timeout_ms=2**63 - 1))
        res = self.client.wait(self.reply)
        self.assertEqual(res["status"], "ok", res.get("error"))

    def test_repeated_inputs_do_not_crash_the_worker(self):
        w = self.worker(*self.model(), "--max-delay-us", "100000")
        # {"op": .., "inputs": {8 tensors}, "inputs": {8 tensors}}: msgpack by hand
        one = tensor(np.ones((1,), np.float32))
        inputs = msgpack.packb({f"x{i}": one for i in range(8)})
        raw = (b"\x84" + msgpack.packb("op") + msgpack.packb("softmax") + msgpack.packb("id")
               + msgpack.packb("twice") + msgpack.packb("inputs") + inputs
               + msgpack.packb("inputs") + inputs)
        self.client.enqueue(None, raw=raw)
        self.client.enqueue(self.mlp(id="beside"))
        self.assertEqual(self.client.wait(self.reply)["id"], "beside")
        self.wait_for(lambda: self.client.result("twice") is not None, what="its error result")
        self.assertEqual(self.client.result("twice")["error"]["code"], "bad_request")
        self.assertIsNone(w.proc.poll())

    def test_memory_is_given_back_after_an_outsized_job(self):
        # under ASan, freed memory waits in a quarantine unless told otherwise
        asan = (os.environ.get("ASAN_OPTIONS", "") + ":quarantine_size_mb=0").lstrip(":")
        w = self.worker("--max-batch", "4096", env={"ASAN_OPTIONS": asan})
        small = {"op": "softmax", "inputs": {"x": tensor(np.ones((1, 64), np.float32))},
                 "reply_to": self.reply}
        for _ in range(50):
            self.client.enqueue(small)
            self.client.wait(self.reply)
        base = rss_kib(w.proc.pid)
        x = np.random.default_rng(0).standard_normal((4, 3_000_000)).astype(np.float32)  # 48 MB
        self.client.enqueue({"op": "softmax", "inputs": {"x": tensor(x)}, "reply_to": self.reply})
        res = self.client.wait(self.reply, timeout=60)
        self.assertEqual(res["status"], "ok", res.get("error"))
        del res
        self.r.delete(self.reply)
        for _ in range(50):
            self.client.enqueue(small)
            self.client.wait(self.reply)
        after = rss_kib(w.proc.pid)
        self.assertLess(after - base, 24 << 10, f"RSS {base} KiB before, {after} KiB after")


class CrossSlot(WorkerTest):
    """A reply list in another Redis Cluster slot: one node holding every slot."""
    redis_args = ("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf")

    def test_cross_slot_reply_costs_only_its_push(self):
        self.r.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)
        deadline = time.time() + 10
        while b"cluster_state:ok" not in self.r.execute_command("CLUSTER", "INFO"):
            self.assertLess(time.time(), deadline, "the cluster did not come up")
            time.sleep(0.05)
        make_mlp(self.path("m.safetensors"), [16, 8], seed=1)
        w = self.worker("--model", f"m={self.path('m.safetensors')}", "--max-delay-us", "200000")
        x = tensor(np.ones((1, 16), np.float32))
        reply = "gpuq:{default}:reply:r"
        self.client.enqueue({"op": "mlp", "model": "m", "inputs": {"x": x}, "id": "far",
                             "reply_to": "reply:{elsewhere}"})
        self.client.enqueue({"op": "mlp", "model": "m", "inputs": {"x": x}, "id": "near",
                             "reply_to": reply})
        item = self.r.blpop([reply], timeout=10)
        self.assertIsNotNone(item, w.output())
        self.assertEqual(msgpack.unpackb(item[1])["id"], "near")
        deadline = time.time() + 10
        while self.client.result("far") is None:
            self.assertLess(time.time(), deadline, w.output())
            time.sleep(0.02)
        self.assertEqual(self.r.xpending(self.client.key("jobs"), "workers")["pending"], 0)


if __name__ == "__main__":
    unittest.main()
