"""What a user installs: `cmake --install` puts the program, its systemd unit
and docs in place and nothing else; CPack's .deb carries the same, declares
dependencies this machine satisfies and none on CUDA, and the program
unpacked from it runs a worker that answers a job."""
import os
import subprocess
import unittest

import numpy as np

from harness import GPUQ, WorkerTest, free_port, from_tensor, make_mlp, mlp_ref, tensor

BUILD = os.path.dirname(os.path.abspath(GPUQ))
WANTED = {"bin/gpuq", "lib/systemd/system/gpuq-worker.service", "share/doc/gpuq/README.md",
          "share/doc/gpuq/protocol.md"}


def sh(*args, **kw):
    p = subprocess.run(args, capture_output=True, text=True, timeout=300, **kw)
    assert p.returncode == 0, f"{args}: {p.stdout}{p.stderr}"
    return p.stdout


def files_under(root):
    return {os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs}


class Package(WorkerTest):
    def serve_with(self, gpuq):
        """A worker run from gpuq answers an mlp job."""
        layers = make_mlp(self.path("m.safetensors"), [4, 3])
        p = subprocess.Popen([gpuq, "worker", "--redis", self.redis.url, "--backend", "cpu",
                              "--model", f"m={self.path('m.safetensors')}"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            x = np.arange(8, dtype=np.float32).reshape(2, 4)
            reply = self.client.key("reply:pkg")
            self.client.enqueue({"op": "mlp", "model": "m", "inputs": {"x": tensor(x)}, "reply_to": reply})
            res = self.client.wait(reply)
            self.assertEqual(res["status"], "ok", res)
            np.testing.assert_allclose(from_tensor(res["outputs"]["y"]), mlp_ref(layers, x), rtol=1e-4, atol=1e-5)
        finally:
            p.terminate()
            self.assertEqual(p.wait(timeout=20), 0, p.stderr.read())

    def test_cmake_install(self):
        prefix = self.path("prefix")
        sh("cmake", "--install", BUILD, "--prefix", prefix)
        got = files_under(prefix)
        self.assertEqual(got - {f for f in got if f.startswith("lib/gpuq/")}, WANTED,
                         "the program, its unit and docs; no static libraries, headers or tests")
        with open(os.path.join(prefix, "lib/systemd/system/gpuq-worker.service")) as f:
            self.assertIn(f"ExecStart={prefix}/bin/gpuq worker", f.read())
        self.assertEqual(sh(os.path.join(prefix, "bin/gpuq"), "--version").strip(),
                         sh(GPUQ, "--version").strip())
        self.serve_with(os.path.join(prefix, "bin/gpuq"))

    def test_deb(self):
        out = self.path("deb")
        sh("cpack", "--config", os.path.join(BUILD, "CPackConfig.cmake"), "-B", out, cwd=self.tmp)
        debs = [f for f in os.listdir(out) if f.startswith("gpuq_") and f.endswith(".deb")]
        self.assertEqual(len(debs), 1, os.listdir(out))
        deb = os.path.join(out, debs[0])
        self.assertEqual(sh("dpkg-deb", "-f", deb, "Package").strip(), "gpuq")
        depends = sh("dpkg-deb", "-f", deb, "Depends").strip()
        for lib in ("libhiredis", "libopenblas", "libsystemd0"):
            self.assertIn(lib, depends)
        for cuda in ("cuda", "cublas"):
            self.assertNotIn(cuda, depends, "the CPU package needs no CUDA libraries")
        # every dependency is installed on this machine, as `dpkg -i` would demand
        sh("dpkg-checkbuilddeps", "-d", depends, "/dev/null")
        root = self.path("root")
        sh("dpkg-deb", "-x", deb, root)
        self.assertEqual(files_under(os.path.join(root, "usr")), WANTED)
        with open(os.path.join(root, "usr/lib/systemd/system/gpuq-worker.service")) as f:
            self.assertIn("ExecStart=/usr/bin/gpuq worker", f.read())
        gpuq = os.path.join(root, "usr/bin/gpuq")
        self.assertEqual(sh(gpuq, "--version").strip(), sh(GPUQ, "--version").strip())
        self.assertNotIn("cuda", sh("ldd", gpuq), "the program links no CUDA library")
        self.serve_with(gpuq)


if __name__ == "__main__":
    unittest.main()
