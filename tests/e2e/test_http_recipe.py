"""The README's embedding recipe, run exactly as written: its fenced block
under "Serve a sentence-transformers model", in a fresh network namespace
(so that its Redis on 6379 and front door on 8080 meet nothing else on this
machine) and a PID namespace (so that what it starts in the background ends
with it), from a folder holding the checkout's build, clients and .cache.
pip installs offline from .cache/pypi and .cache/pypi-http (PIP_NO_INDEX,
PIP_FIND_LINKS): the lines are the README's, only the environment differs."""
import os
import re
import shutil
import subprocess
import tempfile
import unittest

from harness import GPUQ
from httpfront import ROOT, WHEELS

README = os.path.join(ROOT, "README.md")


def recipe():
    with open(README) as f:
        text = f.read()
    section = text[text.index("## Serve a sentence-transformers model"):]
    return re.search(r"```sh\n(.*?)\n```", section, re.S).group(1)


class Recipe(unittest.TestCase):
    def test_readme_recipe_runs_as_written(self):
        if shutil.which("unshare") is None or shutil.which("ip") is None:
            self.skipTest("unshare or ip is missing: no network namespace for the recipe")
        probe = subprocess.run(["unshare", "-n", "--fork", "--pid", "--mount-proc", "true"], capture_output=True)
        if probe.returncode != 0:
            self.skipTest("no network namespace here (needs root): " + probe.stderr.decode().strip())
        if not os.path.exists(os.path.join(WHEELS, ".complete")):
            self.skipTest("no wheels in .cache/pypi-http (scripts/setup fetches them)")
        if not os.path.isdir(os.path.join(ROOT, ".cache", "pyenv")):
            self.skipTest("no .cache/pyenv (scripts/setup installs all-MiniLM-L6-v2 there)")
        block = recipe()
        self.assertIn("openai", block)
        self.assertIn("Content-Type: application/json", block)
        d = tempfile.mkdtemp(prefix="gpuq-recipe-")
        try:
            os.symlink(os.path.dirname(os.path.abspath(GPUQ)), os.path.join(d, "build"))
            for name in ("clients", ".cache"):
                os.symlink(os.path.join(ROOT, name), os.path.join(d, name))
            env = dict(os.environ, PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1",
                       PIP_FIND_LINKS=f"{os.path.join(ROOT, '.cache', 'pypi')} {WHEELS}")
            script = "set -e\nip link set lo up\n" + block + "\n"
            p = subprocess.run(["unshare", "-n", "--fork", "--pid", "--mount-proc", "bash", "-c", script], cwd=d,
                               env=env, capture_output=True, text=True, timeout=400)
            logs = ""
            for name in ("worker.log", "http.log"):
                if os.path.exists(os.path.join(d, name)):
                    with open(os.path.join(d, name)) as f:
                        logs += f.read()[-2000:]
            self.assertEqual(p.returncode, 0, p.stdout + p.stderr + logs)
            lines = p.stdout.strip().splitlines()
            self.assertEqual(lines[0], "(1, 384)", p.stdout)
            self.assertEqual(lines[1], "2 384 17", p.stdout)
            self.assertTrue(lines[2].startswith('{"object":"list","data":[{"object":"embedding","index":0,'
                                                '"embedding":['), p.stdout)
        finally:
            shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    unittest.main()
