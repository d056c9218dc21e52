"""Webhook safety and throughput: the address rules on the address connected
to, headers built only from checked values, lossless JSON bodies, and
deliveries that start at once, per-host caps, and retries that hold neither
a slot nor a body. Every receiver listens on 127.0.0.1."""
import json
import os
import re
import subprocess
import time
import unittest

import msgpack

from harness import GPUQ
from test_webhooks import SECRET, WebhookTest, verify


class WebhookSafety(WebhookTest):
    def dead(self, n=1, timeout=10):
        deadline = time.time() + timeout
        while self.r.xlen(self.client.key("dead")) < n and time.time() < deadline:
            time.sleep(0.02)
        return [f for _, f in self.r.xrange(self.client.key("dead"))]

    def raw_delivery(self, url, jid, result, fmt="json"):
        """A delivery entry written straight to the stream, past admission."""
        self.r.xadd(self.client.key("webhooks"), {"id": jid, "url": url, "format": fmt,
                                                  "result": msgpack.packb(result), "job": b""})

    # ---- the address rules ----

    def test_loopback_refused_by_default(self):
        rx = self.receiver()
        self.start(allow=())
        t0 = time.time()
        self.job(rx.url, "to-loopback")
        self.job(f"http://localhost:{rx.port}/hook", "to-localhost")
        dead = self.dead(2)
        self.assertLess(time.time() - t0, 5, "dead-lettered at once, not retried with backoff")
        self.assertEqual(len(dead), 2)
        for f in dead:
            err = msgpack.unpackb(f[b"error"])
            self.assertEqual(err["code"], "webhook_failed")
            self.assertIn("address not allowed", err["message"])
            self.assertEqual(f[b"attempts"], b"1")
        self.assertTrue(self.hooks_settled())
        time.sleep(0.3)
        self.assertEqual(rx.requests, [], "the receiver must see nothing")

    def test_allow_opens_only_its_range(self):
        rx = self.receiver()
        w = self.start(allow=("--webhook-allow", "10.0.0.0/8"))
        self.job(rx.url, "still-refused")
        self.assertIn("address not allowed", msgpack.unpackb(self.dead(1)[0][b"error"])["message"])
        self.assertEqual(rx.requests, [])
        w.stop()
        # the variable takes a comma-separated list
        self.worker("--model", f"m={self.path('m.safetensors')}",
                    env={"GPUQ_WEBHOOK_ALLOW": "10.0.0.0/8,127.0.0.1/32"})
        self.job(rx.url, "allowed")
        self.assertEqual(len(rx.wait(1)), 1)

    def test_bad_cidr_is_a_bad_flag(self):
        for bad in ("127.0.0.0/33", "localhost", "10.0.0.0/"):
            p = subprocess.run([GPUQ, "worker", "--redis", self.redis.url, "--webhook-allow", bad],
                               capture_output=True, text=True, timeout=20)
            self.assertEqual(p.returncode, 2, p.stderr)
            self.assertIn("not an address range", p.stderr)

    # ---- headers ----

    def test_id_cannot_inject_a_header(self):
        rx = self.receiver()
        self.start()
        self.raw_delivery(rx.url, "evil\r\nX-Injected: yes", {"id": "evil", "status": "ok"})
        req = rx.wait(1)[0]
        self.assertNotIn("x-injected", req["headers"])
        self.assertNotIn("\r\nX-Injected", req["raw_headers"])
        self.assertEqual(req["headers"]["webhook-id"], "evil%0D%0AX-Injected:%20yes")
        self.assertTrue(verify(SECRET, req["headers"], req["body"]), "signed over the id as sent")
        self.assertTrue(self.hooks_settled())

    def test_traceparent_passed_on_when_valid(self):
        rx = self.receiver()
        self.start()
        tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        self.job(rx.url, "traced", meta={"traceparent": tp})
        self.job(rx.url, "forged", meta={"traceparent": tp + "\r\nX-Injected: yes"})
        self.job(rx.url, "untraced")
        by_id = {r["headers"]["webhook-id"]: r["headers"] for r in rx.wait(3)}
        self.assertEqual(by_id["traced"]["traceparent"], tp)
        self.assertNotIn("traceparent", by_id["forged"])
        self.assertNotIn("x-injected", by_id["forged"])
        self.assertNotIn("traceparent", by_id["untraced"])

    # ---- nothing dropped ----

    def test_meta_converts_losslessly(self):
        rx = self.receiver()
        self.start()
        meta = {1: "int key", b"\x01\x02": "bin key", "ext": msgpack.ExtType(5, b"abc"),
                "big": 2**64 - 1, "nan": float("nan"), "bytes": b"\xff\x00", "nested": {-3: [1.5, None]}}
        self.job(rx.url, "odd-meta", meta=meta)
        self.job(rx.url, "odd-meta-mp", meta=meta, params={"callback_format": "msgpack"})
        by_id = {r["headers"]["webhook-id"]: r for r in rx.wait(2)}
        got = json.loads(by_id["odd-meta"]["body"])["meta"]
        self.assertEqual(got["1"], "int key")
        self.assertEqual(got["AQI="], "bin key")
        self.assertEqual(got["ext"], {"ext": 5, "data": "YWJj"})
        self.assertEqual(got["big"], 18446744073709551615)
        self.assertEqual(got["nan"], "NaN")
        self.assertEqual(got["bytes"], "/wA=")
        self.assertEqual(got["nested"], {"-3": [1.5, None]})
        mp = msgpack.unpackb(by_id["odd-meta-mp"]["body"], strict_map_key=False)["meta"]
        self.assertEqual(mp[1], "int key")
        self.assertEqual(mp["ext"], msgpack.ExtType(5, b"abc"))
        self.assertTrue(self.hooks_settled())
        self.assertEqual(self.r.xlen(self.client.key("dead")), 0)

    def test_undeliverable_entry_is_dead_lettered(self):
        self.start()
        self.r.xadd(self.client.key("webhooks"), {"id": "no-url", "result": msgpack.packb({}), "job": b"j"})
        self.r.xadd(self.client.key("webhooks"), {"id": "junk", "url": "http://127.0.0.1:9/x",
                                                  "result": b"\xc1", "job": b"k"})
        dead = self.dead(2)
        self.assertEqual(sorted(f[b"job"] for f in dead), [b"j", b"k"])
        self.assertTrue(all(msgpack.unpackb(f[b"error"])["code"] == "webhook_failed" for f in dead))
        self.assertTrue(self.hooks_settled())

    # ---- throughput and fairness ----

    def test_deliveries_start_as_soon_as_there_is_room(self):
        rx = self.receiver()
        self.start()
        t0 = time.time()
        for i in range(300):
            self.job(rx.url, f"fast-{i}")
        self.assertEqual(len(rx.wait(300, timeout=30)), 300)
        self.assertLess(time.time() - t0, 8, "300 webhooks to a receiver that answers at once")

    def test_retry_after_does_not_block_other_receivers(self):
        bad = self.receiver(status=503, headers={"Retry-After": "3600"})
        good = self.receiver()
        self.start()
        for i in range(80):
            self.job(bad.url, f"bad-{i}")
        bad.wait(64)
        t0 = time.time()
        for i in range(5):
            self.job(good.url, f"good-{i}")
        self.assertEqual(len(good.wait(5, timeout=10)), 5)
        self.assertLess(time.time() - t0, 3, "waiting deliveries hold no slot")
        self.assertEqual(len(bad.wait(80)), 80, "each bad delivery tried once, then waits an hour")
        time.sleep(0.3)
        self.assertEqual(len(bad.requests), 80)

    def test_per_host_cap(self):
        slow = self.receiver(delay=0.4)
        other = self.receiver(delay=0.4)
        self.start("--webhook-per-host", "3")
        for i in range(12):
            self.job(slow.url, f"slow-{i}")
            self.job(other.url, f"other-{i}")
        self.assertEqual(len(slow.wait(12, timeout=20)), 12)
        self.assertEqual(len(other.wait(12, timeout=20)), 12)
        self.assertEqual((slow.most_active, other.most_active), (3, 3))

    def test_waiting_deliveries_hold_no_body(self):
        rx = self.receiver(status=503, headers={"Retry-After": "3600"})
        big = {"id": "big", "status": "ok", "outputs": {"y": {"dtype": "u8", "shape": [4 << 20],
                                                                "data": os.urandom(4 << 20)}}}
        # large allocations from mmap, so freed memory leaves the RSS at once
        # (under ASan too: no quarantine)
        asan = os.environ.get("ASAN_OPTIONS", "") + ":quarantine_size_mb=0"
        w = self.worker("--webhook-allow", "127.0.0.0/8",
                        env={"MALLOC_MMAP_THRESHOLD_": "65536", "ASAN_OPTIONS": asan.lstrip(":")})
        for i in range(48):
            self.raw_delivery(rx.url, f"big-{i}", big)
        self.assertEqual(len(rx.wait(48, timeout=60)), 48)
        time.sleep(0.5)
        with open(f"/proc/{w.proc.pid}/status") as f:
            rss = int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1)) << 10
        # 48 bodies of 5.6 MB (JSON) would be 270 MB; the largest read of
        # entries is transient
        self.assertLess(rss, 120 << 20, f"worker RSS {rss >> 20} MiB with 48 deliveries waiting")
        self.assertEqual(self.r.xpending(self.client.key("webhooks"), "senders")["pending"], 48)


if __name__ == "__main__":
    unittest.main()
