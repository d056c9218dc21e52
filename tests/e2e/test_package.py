"""What a user installs: `cmake --install` puts the program, its systemd unit
and docs in place and nothing else (and the CUDA module where CUDA was
built); CPack's gpuq .deb carries the same, declares dependencies this
machine satisfies and none on CUDA, and the program unpacked from it runs a
worker that answers a job; gpuq-cuda carries the module alone. Without the
module, --backend cuda is a clear start-up error."""
import os
import subprocess
import unittest

import numpy as np

from harness import GPUQ, WorkerTest, free_port, from_tensor, make_mlp, mlp_ref, tensor

BUILD = os.path.dirname(os.path.abspath(GPUQ))
WANTED = {"bin/gpuq", "lib/systemd/system/gpuq-worker.service", "share/doc/gpuq/README.md",
          "share/doc/gpuq/protocol.md"}
MODULE = "lib/gpuq/libgpuq-cuda.so"
HAS_MODULE = os.path.exists(os.path.join(BUILD, "libgpuq-cuda.so"))    # CUDA was built


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
        self.assertEqual(files_under(prefix), WANTED | ({MODULE} if HAS_MODULE else set()),
                         "the program, its unit and docs; no static libraries, headers or tests")
        with open(os.path.join(prefix, "lib/systemd/system/gpuq-worker.service")) as f:
            self.assertIn(f"ExecStart={prefix}/bin/gpuq worker", f.read())
        self.assertEqual(sh(os.path.join(prefix, "bin/gpuq"), "--version").strip(),
                         sh(GPUQ, "--version").strip())
        self.serve_with(os.path.join(prefix, "bin/gpuq"))

    def test_deb(self):
        out = self.path("deb")
        sh("cpack", "--config", os.path.join(BUILD, "CPackConfig.cmake"), "-B", out, cwd=self.tmp)
        debs = sorted((f for f in os.listdir(out) if f.endswith(".deb")), key=lambda f: f.split("_")[0])
        self.assertEqual([d.split("_")[0] for d in debs], ["gpuq"] + (["gpuq-cuda"] if HAS_MODULE else []))
        deb = os.path.join(out, debs[0])
        self.assertEqual(sh("dpkg-deb", "-f", deb, "Package").strip(), "gpuq")
        depends = sh("dpkg-deb", "-f", deb, "Depends").strip()
        for lib in ("libhiredis", "libdnnl", "libsystemd0"):
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
        # without gpuq-cuda: --backend cuda says why at start, auto serves on the CPU
        p = subprocess.run([gpuq, "worker", "--redis", self.redis.url, "--backend", "cuda"],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertEqual(len(p.stderr.strip().splitlines()), 1, p.stderr)
        self.assertIn("cuda backend unavailable: no CUDA module: libgpuq-cuda.so is not beside the program", p.stderr)
        self.assertIn("install gpuq-cuda", p.stderr)
        if HAS_MODULE:
            cuda = os.path.join(out, debs[1])
            self.assertEqual(sh("dpkg-deb", "-f", cuda, "Depends").strip(),
                             f"gpuq (= {sh(GPUQ, '--version').split()[1]})")
            sh("dpkg-deb", "-x", cuda, root)
            self.assertEqual(files_under(os.path.join(root, "usr")), WANTED | {MODULE})
            p = subprocess.run([gpuq, "worker", "--redis", self.redis.url, "--backend", "cuda"],
                               capture_output=True, text=True, timeout=60)
            # the module loads from ../lib/gpuq; on this machine the reason is then the device
            self.assertNotIn("no CUDA module", p.stderr)

    def test_module_errors(self):
        """A module that is missing, not a shared object, or from another build."""
        with open(self.path("junk.so"), "w") as f:
            f.write("not an ELF file")
        other = self.path("other.so")
        with open(self.path("other.c"), "w") as f:
            f.write('struct { int abi; const char *version; } gpuq_cuda_module = {1, "0.0.0-elsewhere"};\n')
        sh("cc", "-shared", "-fPIC", "-o", other, self.path("other.c"))
        for module, why in ((self.path("none.so"), "cannot load"), (self.path("junk.so"), "cannot load"),
                            (other, "is not from this build of gpuq")):
            p = subprocess.run([GPUQ, "worker", "--redis", self.redis.url, "--backend", "cuda"],
                               capture_output=True, text=True, timeout=30, env=dict(os.environ, GPUQ_CUDA_MODULE=module))
            self.assertEqual(p.returncode, 2, p.stderr)
            self.assertIn("cuda backend unavailable: ", p.stderr)
            self.assertIn(why, p.stderr)
            self.assertIn(module, p.stderr)
        self.assertIn("it is 0.0.0-elsewhere", p.stderr)


if __name__ == "__main__":
    unittest.main()
