"""The Python and Node clients as a user installs them: built into a wheel
and an sdist, installed in a clean venv; packed and installed into a fresh
npm project, offline. Their own tests (clients/*/test*) then run against the
installed packages and a real Redis and worker, and so do the gateway examples."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.request

import numpy as np

from harness import WorkerTest, free_port, make_mlp, mlp_ref, save_safetensors

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
PY_CLIENT = os.path.join(ROOT, "clients", "python")
NODE_CLIENT = os.path.join(ROOT, "clients", "node")
WHEELS = os.path.join(ROOT, ".cache", "pypi")   # filled by scripts/setup
NODE_ENV = {"NODE_PATH": "/usr/share/nodejs"}   # Debian's node-redis serves the peer dependency
TMP = None


def sh(argv, **kw):
    p = subprocess.run(argv, capture_output=True, text=True, timeout=300, **kw)
    if p.returncode:
        raise AssertionError(f"{' '.join(argv)} failed:\n{p.stdout}\n{p.stderr}")
    return p.stdout


def venv(name, system=False):
    path = os.path.join(TMP, name)
    sh([sys.executable, "-m", "venv", *(["--system-site-packages"] if system else []), path])
    return os.path.join(path, "bin", "python")


def pip_install(python, *args):
    sh([python, "-m", "pip", "install", "-q", "--no-index", "--find-links", WHEELS, *args],
       env=dict(os.environ, PIP_FIND_LINKS=""))


def build_python():
    """An sdist from a copy of the folder, a wheel built from that sdist."""
    src, dist = os.path.join(TMP, "py-src"), os.path.join(TMP, "dist")
    shutil.copytree(PY_CLIENT, src)
    builder = venv("build-venv")
    pip_install(builder, "setuptools")
    sh([builder, "-c", f"from setuptools import build_meta; build_meta.build_sdist({dist!r})"], cwd=src)
    sdist = os.path.join(dist, os.listdir(dist)[0])
    sh([sys.executable, "-m", "pip", "wheel", "-q", "--no-index", "--find-links", WHEELS, "--no-deps",
        "-w", dist, sdist], env=dict(os.environ, PIP_FIND_LINKS=""))
    return [os.path.join(dist, f) for f in os.listdir(dist) if f.endswith(".whl")][0]


def npm(*args, cwd):
    return sh(["npm", *args, "--offline", "--no-audit", "--no-fund", "--loglevel=error"], cwd=cwd)


def npm_project(name, package):
    proj = os.path.join(TMP, name)
    os.makedirs(proj)
    with open(os.path.join(proj, "package.json"), "w") as f:
        json.dump({"name": name, "version": "1.0.0", "private": True}, f)
    npm("install", package, cwd=proj)
    return proj


def setUpModule():
    global TMP
    if not os.path.exists(os.path.join(WHEELS, ".complete")):
        raise RuntimeError(f"{WHEELS} is missing: scripts/setup fills it")
    TMP = tempfile.mkdtemp(prefix="gpuq-clients-")


def tearDownModule():
    shutil.rmtree(TMP, ignore_errors=True)


def post(url, body):
    req = urllib.request.Request(url, json.dumps(body).encode(), {"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def wait_http(url, proc, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: server exited")
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


DOCS = ["the weather is lovely today", "it is sunny", "a cat sat on the mat", "rain again", "stock prices fell"]
TEXTS = ["sun", "the weather"]   # the clients' embed() tests ask for these


class Clients(WorkerTest):
    X = np.array([[1, 2, 3, 4]], np.float32)

    def setUp(self):
        super().setUp()
        self.layers = make_mlp(self.path("m.safetensors"), [4, 6, 3], seed=4)
        save_safetensors(self.path("idx.safetensors"),
                         {"embeddings": np.random.default_rng(2).standard_normal((8, 4))})
        # a tiny text encoder, and the index of DOCS that it embeds, by a first worker
        text = self.path("text")
        subprocess.run([os.path.join(ROOT, "scripts", "make-model"), "--bert", text, "--pooling", "mean",
                        "--normalize"], check=True)
        # and a tiny cross-encoder: the scores the clients' rerank() and classify() must give
        ce = self.path("ce")
        subprocess.run([os.path.join(ROOT, "scripts", "make-model"), "--family", "bert", ce, "--head", "classify",
                        "1"], check=True)
        sp = self.path("sp")      # and a tiny masked-LM head: the clients' embed_sparse()
        subprocess.run([os.path.join(ROOT, "scripts", "make-model"), "--family", "bert", sp, "--head", "mlm"],
                       check=True)
        first = self.worker("--model", f"text={text}", "--model", f"ce={ce}", "--model", f"sp={sp}")
        docs_y, text_y = self.embed(DOCS), self.embed(TEXTS)
        ce_scores = self.scores("rerank", {"query": TEXTS[1], "documents": DOCS})
        ce_probs = self.scores("classify", {"text": DOCS})
        sparse = self.outputs("embed_sparse", "sp", {"text": DOCS})
        doc = " ".join(DOCS * 6)     # a document of several windows of 16 tokens
        chunks = self.outputs("embed", "text", {"text": doc}, chunk={"tokens": 16, "overlap": 4})
        first.stop()
        save_safetensors(self.path("docs.safetensors"), {"embeddings": docs_y})
        with open(self.path("docs.json"), "w") as f:
            json.dump(DOCS, f)
        self.worker("--model", f"encoder={self.path('m.safetensors')}",
                    "--model", f"idx={self.path('idx.safetensors')}", "--model", f"text={text}",
                    "--model", f"docs={self.path('docs.safetensors')}", "--model", f"ce={ce}", "--model", f"sp={sp}")
        self.env = dict(os.environ, GPUQ_REDIS=self.redis.url, GPUQ_MODEL_NAME="encoder", GPUQ_KNN_NAME="idx",
                        GPUQ_WANT=json.dumps(mlp_ref(self.layers, self.X)[0].tolist()),
                        GPUQ_TEXT_MODEL="text", GPUQ_INDEX_NAME="docs", GPUQ_DOCS=self.path("docs.json"),
                        GPUQ_TEXTS=json.dumps(TEXTS), GPUQ_TEXT_WANT=json.dumps(text_y.tolist()),
                        GPUQ_CE_MODEL="ce", GPUQ_CE_DOCS=json.dumps(DOCS), GPUQ_RERANK_WANT=json.dumps(ce_scores.tolist()),
                        GPUQ_CLASSIFY_WANT=json.dumps(ce_probs.tolist()), GPUQ_SPARSE_MODEL="sp",
                        GPUQ_SPARSE_WANT=json.dumps({k: sparse[k].tolist() for k in ("indices", "values", "offsets")}),
                        GPUQ_DOC=doc, GPUQ_DOC_WANT=json.dumps({k: chunks[k].tolist()
                                                                for k in ("y", "char_start", "char_end")}))
        self.procs = []

    def embed(self, texts):
        """texts embedded by the worker's `text` model, through the protocol itself."""
        self.client.enqueue({"op": "embed", "model": "text", "inputs": {"text": texts}, "id": "e",
                             "reply_to": "gpuq:{default}:r"})
        r = self.client.wait("gpuq:{default}:r")
        self.assertEqual(r["status"], "ok", r.get("error"))
        return np.frombuffer(r["outputs"]["y"]["data"], "<f4").reshape(r["outputs"]["y"]["shape"])

    def outputs(self, op, model, inputs, **params):
        """The outputs of op on model, as numpy arrays, through the protocol itself."""
        self.client.enqueue({"op": op, "model": model, "inputs": inputs, "params": params, "id": op,
                             "reply_to": "gpuq:{default}:r"})
        r = self.client.wait("gpuq:{default}:r")
        self.assertEqual(r["status"], "ok", r.get("error"))
        dt = {"f32": "<f4", "i32": "<i4", "i64": "<i8"}
        return {k: np.frombuffer(v["data"], dt[v["dtype"]]).reshape(v["shape"]) for k, v in r["outputs"].items()}

    def scores(self, op, inputs):
        """The `scores` of op on the worker's cross-encoder `ce`, through the protocol itself."""
        self.client.enqueue({"op": op, "model": "ce", "inputs": inputs, "id": op, "reply_to": "gpuq:{default}:r"})
        r = self.client.wait("gpuq:{default}:r")
        self.assertEqual(r["status"], "ok", r.get("error"))
        return np.frombuffer(r["outputs"]["scores"]["data"], "<f4").reshape(r["outputs"]["scores"]["shape"])

    def tearDown(self):
        for p in self.procs:
            p.kill()
            p.wait()
        super().tearDown()

    def start(self, argv, cwd, env):
        p = subprocess.Popen(argv, cwd=cwd, env=dict(self.env, **env), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        self.procs.append(p)
        return p

    def check_gateway(self, base, proc):
        """/embed: texts in, their embeddings out; /search: the nearest texts by cosine, the
        candidates re-ordered by the cross-encoder (the gateway runs with GPUQ_RERANK_MODEL=ce)."""
        wait_http(base + "/healthz", proc)
        status, body = post(base + "/embed", {"texts": TEXTS})
        self.assertEqual(status, 200, body)
        np.testing.assert_allclose(body["embeddings"], json.loads(self.env["GPUQ_TEXT_WANT"]), atol=1e-6)
        self.assertIn(post(base + "/embed", {"texts": []})[0], (400, 422))
        self.assertIn(post(base + "/embed", {"x": [[1.0, 2.0]]})[0], (400, 422))
        status, body = post(base + "/search", {"query": DOCS[3], "k": 2})
        self.assertEqual(status, 200, body)
        got = body["results"]
        self.assertEqual(len(got), 2)
        # the cross-encoder's scores of every document against the query, through the protocol
        want = self.scores("rerank", {"query": DOCS[3], "documents": DOCS})
        best = sorted(range(len(DOCS)), key=lambda i: (-want[i], i))[:2]     # 4 k covers all 5 documents
        self.assertEqual([r["text"] for r in got], [DOCS[i] for i in best])
        np.testing.assert_allclose([r["rerank_score"] for r in got], [want[i] for i in best], rtol=1e-5)
        cos = {DOCS[3]: 1.0}
        for r in got:
            self.assertLessEqual(r["score"], 1.0 + 1e-5)
            if r["text"] in cos:
                self.assertAlmostEqual(r["score"], cos[r["text"]], places=4)

    def test_python_package(self):
        """Built as a wheel from its sdist, installed in a clean venv: the client's tests pass there."""
        wheel = build_python()
        python = venv("py-venv")
        pip_install(python, wheel)
        tests = shutil.copytree(os.path.join(PY_CLIENT, "tests"), os.path.join(TMP, "py-tests"))
        p = subprocess.run([python, "-m", "unittest", "discover", "-v", "-s", tests], cwd=TMP, env=self.env,
                           capture_output=True, text=True, timeout=300)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertRegex(p.stderr, r"Ran \d+ tests")
        # and straight from the folder, typed
        target = os.path.join(TMP, "py-folder")
        pip_install(sys.executable, "--no-deps", "--target", target, shutil.copytree(PY_CLIENT, target + "-src"))
        self.assertTrue(os.path.exists(os.path.join(target, "gpuq_client", "py.typed")))

    def test_fastapi_example(self):
        """As its docstring says: `python3 -m uvicorn fastapi_gateway:app` beside the installed client."""
        python = venv("gw-venv", system=True)   # fastapi and uvicorn from Debian
        pip_install(python, shutil.copytree(PY_CLIENT, os.path.join(TMP, "gw-src")))
        with open(os.path.join(PY_CLIENT, "examples", "fastapi_gateway.py")) as f:
            doc = f.read()
        self.assertIn("python3 -m uvicorn fastapi_gateway:app", doc)
        self.assertIn("GPUQ_RERANK_MODEL", doc)
        with open(os.path.join(PY_CLIENT, "examples", "docs.json")) as f:
            self.assertGreater(len(json.load(f)), 10)       # the sample documents ship with it
        # its index builder writes what the worker's own embeddings make
        sh([python, "fastapi_gateway.py", self.path("docs.json"), self.path("built.safetensors")],
           cwd=os.path.join(PY_CLIENT, "examples"), env=self.env)
        with open(self.path("built.safetensors"), "rb") as a, open(self.path("docs.safetensors"), "rb") as b:
            built, want = a.read(), b.read()
        n = 8 + int.from_bytes(built[:8], "little")
        self.assertEqual(len(built), n + len(DOCS) * 64 * 4)
        np.testing.assert_array_equal(np.frombuffer(built[n:], "<f4"), np.frombuffer(want[-len(DOCS) * 256:], "<f4"))
        port = free_port()
        p = self.start([python, "-m", "uvicorn", "fastapi_gateway:app", "--port", str(port), "--log-level",
                        "warning"], os.path.join(PY_CLIENT, "examples"), {"GPUQ_RERANK_MODEL": "ce"})
        self.check_gateway(f"http://127.0.0.1:{port}", p)

    def node_or_skip(self):
        if not shutil.which("node") or not shutil.which("npm") or not os.path.isdir("/usr/share/nodejs/redis"):
            self.skipTest("node, npm or node-redis missing (scripts/setup installs them)")

    def test_node_package(self):
        """Packed and installed offline into a fresh project: the client's tests pass there, by
        require and by import; installing the folder itself works too."""
        self.node_or_skip()
        tgz = sh(["npm", "pack", "--pack-destination", TMP, NODE_CLIENT, "--loglevel=error"], cwd=TMP).split()[-1]
        proj = npm_project("node-proj", os.path.join(TMP, tgz))
        self.assertFalse(os.path.islink(os.path.join(proj, "node_modules", "gpuq-client")))
        shutil.copytree(os.path.join(NODE_CLIENT, "test"), os.path.join(proj, "test"))
        # the stored msgpack result that the Node tests read
        self.client.enqueue({"op": "mlp", "model": "encoder", "id": "py-msgpack", "reply_to": "gpuq:{default}:r",
                             "inputs": {"x": {"dtype": "f32", "shape": [1, 4], "data": self.X.tobytes()}}})
        self.client.wait("gpuq:{default}:r")
        p = subprocess.run(["node", "--test", "test/"], cwd=proj, capture_output=True, text=True, timeout=300,
                           env=dict(self.env, GPUQ_MSGPACK_ID="py-msgpack", **NODE_ENV))
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertRegex(p.stdout, r"# pass 10\b")
        self.assertRegex(p.stdout, r"# fail 0\b")
        linked = npm_project("node-folder", NODE_CLIENT)
        sh(["node", "-e", "require('gpuq-client').tensor('f32', [1], [1])"], cwd=linked, env=dict(self.env, **NODE_ENV))

    def test_node_gateway(self):
        self.node_or_skip()
        proj = npm_project("node-gw", NODE_CLIENT)
        shutil.copy(os.path.join(NODE_CLIENT, "examples", "gateway.js"), proj)
        port = free_port()
        p = self.start(["node", "gateway.js"], proj, dict(NODE_ENV, PORT=str(port), GPUQ_RERANK_MODEL="ce"))
        self.check_gateway(f"http://127.0.0.1:{port}", p)


if __name__ == "__main__":
    unittest.main()
