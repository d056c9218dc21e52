"""Webhooks to a real HTTP receiver: Standard Webhooks signatures checked by
a verifier written here from the spec, JSON and msgpack bodies, retries with
backoff and Retry-After, dead letters after --max-attempts, and a delivery
left by a killed worker finished by another."""
import base64
import hashlib
import hmac
import json
import signal
import threading
import time
import unittest
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import msgpack
import numpy as np

from harness import WorkerTest, free_port, from_tensor, make_mlp, mlp_ref, tensor

SECRET = "whsec_" + base64.b64encode(b"a test secret of 32 bytes, ok!!!").decode()


def verify(secret, headers, body):
    """Standard Webhooks: v1 = base64(HMAC-SHA256(key, id.timestamp.body))."""
    key = base64.b64decode(secret.split("_", 1)[1])
    msg_id, ts = headers["webhook-id"], headers["webhook-timestamp"]
    expected = base64.b64encode(hmac.new(key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()).decode()
    sigs = [s.split(",", 1)[1] for s in headers["webhook-signature"].split(" ") if s.startswith("v1,")]
    return any(hmac.compare_digest(expected, s) for s in sigs)


class Receiver:
    """Answers with the statuses in `plan` (then `status`), after `delay` s,
    recording each request and the most requests it held at once."""

    def __init__(self, plan=(), port=None, headers=None, status=200, delay=0):
        self.plan, self.requests, self.extra = list(plan), [], headers or {}
        self.active = self.most_active = 0
        lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with lock:
                    outer.active += 1
                    outer.most_active = max(outer.most_active, outer.active)
                    outer.requests.append({"t": time.time(), "body": body,
                                           "headers": {k.lower(): v for k, v in self.headers.items()},
                                           "raw_headers": self.headers.as_string()})
                time.sleep(delay)
                with lock:
                    outer.active -= 1
                status_now = outer.plan.pop(0) if outer.plan else status
                self.send_response(status_now)
                for k, v in outer.extra.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        self.port = port or free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.port}/hook"

    def wait(self, n, timeout=15):
        deadline = time.time() + timeout
        while len(self.requests) < n and time.time() < deadline:
            time.sleep(0.01)
        return self.requests

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


class WebhookTest(WorkerTest):
    """Receivers, a worker with a model, jobs with a callback."""

    def setUp(self):
        super().setUp()
        self.layers = make_mlp(self.path("m.safetensors"), [4, 3])
        self.receivers = []

    def tearDown(self):
        for r in self.receivers:
            r.stop()
        super().tearDown()

    def receiver(self, *a, **kw):
        r = Receiver(*a, **kw)
        self.receivers.append(r)
        return r

    def start(self, *args, allow=("--webhook-allow", "127.0.0.0/8")):
        """A worker; its local receivers are opened with --webhook-allow."""
        return self.worker("--model", f"m={self.path('m.safetensors')}", "--webhook-secret", SECRET, *allow, *args)

    def job(self, url, jid, **kw):
        x = np.arange(8, dtype=np.float32).reshape(2, 4)
        j = {"op": "mlp", "model": "m", "inputs": {"x": tensor(x)}, "id": jid, "callback": url}
        j.update(kw)
        self.client.enqueue(j)
        return x

    def hooks_settled(self):
        key = self.client.key("webhooks")
        deadline = time.time() + 10
        while time.time() < deadline:
            if self.r.xlen(key) == 0 and self.r.xpending(key, "senders")["pending"] == 0:
                return True
            time.sleep(0.02)
        return False



class Webhooks(WebhookTest):
    def test_json_delivery_signed(self):
        rx = self.receiver()
        self.start()
        x = self.job(rx.url, "hook-1", meta={"k": 1})
        req = rx.wait(1)[0]
        h = req["headers"]
        self.assertEqual(h["content-type"], "application/json")
        self.assertEqual(h["webhook-id"], "hook-1")
        self.assertLess(abs(int(h["webhook-timestamp"]) - time.time()), 60)
        self.assertTrue(verify(SECRET, h, req["body"]), "signature does not verify")
        self.assertFalse(verify(SECRET, h, req["body"] + b" "), "a changed body must not verify")
        res = json.loads(req["body"])
        self.assertEqual((res["id"], res["status"], res["meta"]), ("hook-1", "ok", {"k": 1}))
        y = res["outputs"]["y"]
        got = np.frombuffer(base64.b64decode(y["data"]), np.float32).reshape(y["shape"])
        np.testing.assert_allclose(got, mlp_ref(self.layers, x), rtol=1e-5, atol=1e-5)
        self.assertEqual(self.client.result("hook-1")["status"], "ok")   # stored as well
        self.assertTrue(self.hooks_settled())
        time.sleep(0.2)
        self.assertEqual(len(rx.requests), 1, "delivered once")

    def test_msgpack_body_and_error_results(self):
        rx = self.receiver()
        self.start()
        self.job(rx.url, "mp", params={"callback_format": "msgpack"})
        self.job(rx.url, "bad", model="nope")
        reqs = rx.wait(2)
        by_id = {r["headers"]["webhook-id"]: r for r in reqs}
        self.assertEqual(by_id["mp"]["headers"]["content-type"], "application/msgpack")
        res = msgpack.unpackb(by_id["mp"]["body"])
        self.assertEqual(from_tensor(res["outputs"]["y"]).shape, (2, 3))
        self.assertTrue(verify(SECRET, by_id["mp"]["headers"], by_id["mp"]["body"]))
        self.assertEqual(json.loads(by_id["bad"]["body"])["error"]["code"], "unknown_model")

    def test_fails_twice_then_succeeds(self):
        rx = self.receiver(plan=[500, 502])
        self.start("--webhook-backoff-ms", "100")
        self.job(rx.url, "retry")
        reqs = rx.wait(3)
        self.assertEqual(len(reqs), 3)
        gap1, gap2 = reqs[1]["t"] - reqs[0]["t"], reqs[2]["t"] - reqs[1]["t"]
        self.assertGreaterEqual(gap1, 0.07)
        self.assertGreater(gap2, gap1, "backoff must grow")
        # each retry reads its entry again: the same body, signed anew
        self.assertEqual(len({r["body"] for r in reqs}), 1)
        self.assertTrue(all(verify(SECRET, r["headers"], r["body"]) for r in reqs))
        self.assertTrue(self.hooks_settled())
        self.assertEqual(self.r.xlen(self.client.key("dead")), 0)

    def test_always_fails_dead_letter(self):
        rx = self.receiver(plan=[500] * 20)
        self.start("--webhook-backoff-ms", "20", "--max-attempts", "3")
        self.job(rx.url, "doomed")
        deadline = time.time() + 10
        while self.r.xlen(self.client.key("dead")) == 0 and time.time() < deadline:
            time.sleep(0.02)
        time.sleep(0.3)
        self.assertEqual(len(rx.requests), 3, "exactly --max-attempts tries")
        dead = self.r.xrange(self.client.key("dead"))
        self.assertEqual(len(dead), 1)
        f = dead[0][1]
        err = msgpack.unpackb(f[b"error"])
        self.assertEqual(err["code"], "webhook_failed")
        self.assertIn("500", err["message"])
        self.assertEqual(f[b"attempts"], b"3")
        self.assertEqual(f[b"callback"].decode(), rx.url)
        self.assertEqual(msgpack.unpackb(f[b"job"])["id"], "doomed")
        self.assertEqual(self.client.result("doomed")["status"], "ok", "the result is stored anyway")
        self.assertTrue(self.hooks_settled())

    def test_retry_after_is_honoured(self):
        rx = self.receiver(plan=[503], headers={"Retry-After": "1"})
        self.start("--webhook-backoff-ms", "20")
        self.job(rx.url, "later")
        reqs = rx.wait(2)
        self.assertEqual(len(reqs), 2)
        self.assertGreaterEqual(reqs[1]["t"] - reqs[0]["t"], 0.9)

    def test_bad_callback_is_a_bad_request(self):
        rx = self.receiver()
        self.start()
        reply = self.client.key("reply:cb")
        x = tensor(np.ones((1, 4), np.float32))
        # not http(s): an error result, and nothing is ever POSTed anywhere
        self.client.enqueue({"op": "mlp", "model": "m", "inputs": {"x": x}, "callback": "ftp://x/y", "reply_to": reply})
        self.assertEqual(self.client.wait(reply)["error"]["code"], "bad_request")
        self.assertTrue(self.hooks_settled())
        self.assertEqual(rx.requests, [])
        # a usable URL but an unknown format: the error result goes there, as JSON
        self.client.enqueue({"op": "mlp", "model": "m", "inputs": {"x": x}, "callback": rx.url, "id": "fmt",
                             "params": {"callback_format": "xml"}, "reply_to": reply})
        self.assertEqual(self.client.wait(reply)["error"]["code"], "bad_request")
        req = rx.wait(1)[0]
        self.assertEqual(json.loads(req["body"])["error"]["code"], "bad_request")

    def test_delivery_survives_a_killed_worker(self):
        port = free_port()
        url = f"http://127.0.0.1:{port}/hook"       # nothing listens yet
        w = self.start("--webhook-backoff-ms", "60000", "--claim-idle-ms", "300")
        self.job(url, "orphan")
        deadline = time.time() + 10
        while self.r.xpending(self.client.key("webhooks"), "senders")["pending"] == 0 and time.time() < deadline:
            time.sleep(0.02)
        time.sleep(0.2)     # its first attempt failed; the next is a minute away
        w.proc.send_signal(signal.SIGKILL)
        w.proc.wait()
        rx = self.receiver(port=port)
        self.start("--claim-idle-ms", "300")
        reqs = rx.wait(1)
        self.assertEqual(len(reqs), 1, "another worker must finish the delivery")
        self.assertEqual(reqs[0]["headers"]["webhook-id"], "orphan")
        self.assertTrue(self.hooks_settled())


if __name__ == "__main__":
    unittest.main()
