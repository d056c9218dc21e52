"""What the `gpuq http` tests share: the front door as a process, plain
HTTP requests to it, and a clean venv with the real clients people point at
it (openai, langchain-openai, selenium), installed offline from the wheels
scripts/setup keeps in .cache/pypi-http."""
import fcntl
import hashlib
import http.client
import json
import os
import subprocess
import sys
import tempfile
import time

from harness import GPUQ, free_port

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
WHEELS = os.path.join(ROOT, ".cache", "pypi-http")
BUILD = os.path.dirname(os.path.abspath(GPUQ))
VENV = os.path.join(BUILD, "http-venv")
CLIENTS = ["openai==3.63.0", "langchain-openai==1.8.1", "selenium==4.51.0", "redis==5.0.8"]
PYPI = os.path.join(ROOT, ".cache", "pypi")     # redis-py's wheel, for the dashboard's driver


def client_venv():
    """The venv's python, made once per build folder; None when the wheels
    are not there (scripts/setup fetches them). The suites that use it may
    run at once (ctest -j): the first makes it under a lock, the others wait."""
    py = os.path.join(VENV, "bin", "python")
    marker = os.path.join(VENV, ".installed-" + hashlib.sha256(" ".join(CLIENTS).encode()).hexdigest()[:12])
    if not os.path.exists(os.path.join(WHEELS, ".complete")):
        return None
    with open(VENV + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not os.path.exists(marker):
            subprocess.run([sys.executable, "-m", "venv", "--clear", VENV], check=True)
            subprocess.run([py, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-index",
                            "--find-links", WHEELS, "--find-links", PYPI, *CLIENTS], check=True)
            open(marker, "w").close()
    return py


def run_in_venv(py, code, timeout=120):
    """Runs code with the venv's python; its stdout's last line as JSON."""
    env = dict(os.environ, NO_PROXY="*", no_proxy="*")
    for k in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        env.pop(k, None)
    p = subprocess.run([py, "-c", code], capture_output=True, text=True, timeout=timeout, env=env)
    if p.returncode != 0:
        raise AssertionError(f"client script failed:\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def key_file(path, lines):
    """lines: (key, scope or None, queue or None); writes their digests."""
    with open(path, "w") as f:
        f.write("# gpuq http keys: SHA-256 of each key\n")
        for key, scope, queue in lines:
            words = [hashlib.sha256(key.encode()).hexdigest(), scope or "", queue or ""]
            f.write(" ".join(w for w in words if w) + "\n")
    return path


class Front:
    """`gpuq http` on a free loopback port."""

    def __init__(self, redis_url, *args, env=None):
        self.port = free_port()
        self.log = tempfile.NamedTemporaryFile(prefix="gpuq-http-", suffix=".log", delete=False)
        e = dict(os.environ)
        e.update(env or {})
        self.proc = subprocess.Popen([GPUQ, "http", "--redis", redis_url, "--listen", f"127.0.0.1:{self.port}",
                                      *args], stdout=self.log, stderr=subprocess.STDOUT, env=e)
        self.log.close()
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.time() + 10
        while time.time() < deadline:
            if "listening" in self.output() or self.proc.poll() is not None:
                break
            time.sleep(0.02)
        if "listening" not in self.output():
            raise RuntimeError("gpuq http did not start:\n" + self.output())

    def output(self):
        with open(self.log.name) as f:
            return f.read()

    def request(self, method, path, body=None, key=None, headers=None, timeout=60):
        """(status, headers, parsed JSON or text)."""
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        h = {"Content-Type": "application/json"} if body is not None else {}
        if key:
            h["Authorization"] = f"Bearer {key}"
        h.update(headers or {})
        data = body if isinstance(body, (bytes, str)) or body is None else json.dumps(body)
        c.request(method, path, body=data, headers=h)
        r = c.getresponse()
        raw = r.read()
        c.close()
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = raw.decode(errors="replace")
        return r.status, dict(r.getheaders()), parsed

    def post(self, path, body, **kw):
        return self.request("POST", path, body, **kw)

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
        rc = self.proc.wait(timeout=20)
        os.unlink(self.log.name)
        return rc
