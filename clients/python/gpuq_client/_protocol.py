"""The protocol's data, with no I/O: tensors, jobs, results and errors."""
from __future__ import annotations

import base64
import json
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import msgpack
import numpy as np

_DTYPES = {"f32": "<f4", "f16": "<f2", "f64": "<f8", "i8": "i1", "u8": "u1", "i32": "<i4", "i64": "<i8",
           "bf16": "<u2"}  # bf16 comes back as its raw 16-bit words
_NAMES = {np.dtype(v): k for k, v in _DTYPES.items() if k != "bf16"}

Tensor = Dict[str, Any]


def to_tensor(a: Any) -> Tensor:
    """A numpy array (or anything np.asarray takes) as a protocol tensor: C order, little-endian."""
    a = np.ascontiguousarray(a)
    name = _NAMES.get(a.dtype.newbyteorder("<") if a.dtype.byteorder == ">" else a.dtype)
    if name is None:
        raise TypeError(f"gpuq has no dtype for {a.dtype}")
    return {"dtype": name, "shape": list(a.shape), "data": a.astype(_DTYPES[name], copy=False).tobytes()}


def from_tensor(t: Mapping[str, Any]) -> np.ndarray:
    """A protocol tensor as a read-only numpy array; data may be bytes (msgpack) or base64 (JSON)."""
    data = t["data"]
    if isinstance(data, str):
        data = base64.b64decode(data)
    return np.frombuffer(data, dtype=_DTYPES[t["dtype"]]).reshape(t["shape"])


class GpuqError(Exception):
    """An error result: code is one of the protocol's error codes (bad_request, shape_mismatch, ...)."""

    def __init__(self, code: str, message: str, result: Optional["Result"] = None):
        super().__init__(f"{code}: {message}")
        self.code, self.message, self.result = code, message, result


class GpuqTimeoutError(TimeoutError):
    """No result came within the time asked for. Not a GpuqError: the job may still run."""


class Result:
    """One job's result, decoded: outputs are numpy arrays."""

    def __init__(self, raw: Dict[str, Any]):
        self.raw = raw
        self.id: Optional[str] = raw.get("id")
        self.status: Optional[str] = raw.get("status")
        # tensors as numpy arrays; a text output (classify's labels, rerank's texts) as a list of str
        self.outputs: Dict[str, Any] = {k: from_tensor(v) if isinstance(v, Mapping) else v
                                        for k, v in (raw.get("outputs") or {}).items()}
        self.error: Optional[Dict[str, str]] = raw.get("error")
        self.meta: Any = raw.get("meta")
        self.timing: Dict[str, int] = raw.get("timing") or {}
        self.worker: Optional[str] = raw.get("worker")

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def raise_for_error(self) -> "Result":
        """This result, or GpuqError when it is an error result."""
        if not self.ok:
            err = self.error or {}
            raise GpuqError(err.get("code", "internal"), err.get("message", "no error given"), self)
        return self


# embed's params, taken by Client.embed as keyword arguments
EMBED_PARAMS = ("pooling", "normalize", "max_length", "prompt", "prompt_name", "truncate",
                "truncation_direction", "dimensions", "dtype", "ranges", "chunk")


def op_params(options: Dict[str, Any], names: Sequence[str]) -> None:
    """The op's params among options' keyword arguments, into options["params"] (None: left out)."""
    params = dict(options.get("params") or {})
    for k in names:
        v = options.pop(k, None)
        if v is not None:
            params[k] = v
    if params:
        options["params"] = params


def rerank_inputs(query: str, documents: Sequence[str]) -> Dict[str, Any]:
    if not isinstance(query, str) or isinstance(documents, str):
        raise TypeError("rerank takes a query str and a list of document strs")
    return {"query": query, "documents": list(documents)}


def ranking(res: Result) -> List[Dict[str, Any]]:
    """rerank's result: [{"index", "score"[, "text"]}], highest score first."""
    scores, order, texts = res.outputs["scores"], res.outputs["order"], res.outputs.get("texts")
    return [dict({"index": int(i), "score": float(scores[i])}, **({"text": texts[n]} if texts else {}))
            for n, i in enumerate(order)]


def labelled(res: Result, one: bool) -> Any:
    """classify's result: per row, [{"label", "score"}] highest first (all labels, or the top_k)."""
    scores, labels, top = res.outputs["scores"], res.outputs["labels"], res.outputs.get("top")
    rows = [[{"label": labels[j], "score": float(row[j])}
             for j in (top[r] if top is not None else np.argsort(-row, kind="stable"))]
            for r, row in enumerate(scores)]
    return rows[0] if one else rows


def sparse_rows(res: Result, one: bool) -> Any:
    """embed_sparse's ragged rows: per text {"indices", "values"[, "tokens"]}."""
    idx, val, off, tok = (res.outputs.get(k) for k in ("indices", "values", "offsets", "tokens"))
    rows = [dict({"indices": idx[off[r]:off[r + 1]], "values": val[off[r]:off[r + 1]]},
                 **({"tokens": tok[off[r]:off[r + 1]]} if tok is not None else {}))
            for r in range(len(off) - 1)]
    return rows[0] if one else rows


def chunks_of(res: Result, text: str) -> List[Dict[str, Any]]:
    """embed's windows of one document: [{"text", "start", "end", "embedding"}], start and
    end being byte offsets into the text's UTF-8."""
    raw = text.encode()
    y, start, end = res.outputs["y"], res.outputs["char_start"], res.outputs["char_end"]
    return [{"text": raw[a:b].decode(errors="replace"), "start": int(a), "end": int(b), "embedding": row}
            for row, a, b in zip(y, start, end)]


def embed_params(options: Dict[str, Any]) -> None:
    """embed's params, given as keyword arguments in options, into options["params"]; those left
    None take the model folder's defaults."""
    params = dict(options.get("params") or {})
    for k in EMBED_PARAMS:
        v = options.pop(k, None)
        if v is not None:
            params[k] = v.ravel().tolist() if k == "ranges" and isinstance(v, np.ndarray) else v
    if params:
        options["params"] = params


def decode_result(raw: Union[bytes, str]) -> Result:
    """A result as the worker wrote it: JSON text for a job sent as JSON, msgpack otherwise."""
    if isinstance(raw, str) or raw[:1] == b"{":
        return Result(json.loads(raw))
    return Result(msgpack.unpackb(raw, raw=False))


def is_text(v: Any) -> bool:
    """A text input: a str, or a list or tuple of str (embed)."""
    return isinstance(v, str) or (isinstance(v, (list, tuple)) and len(v) > 0 and all(isinstance(s, str) for s in v))


def encode_job(op: str, inputs: Mapping[str, Any], **fields: Any) -> bytes:
    """The msgpack job; text inputs go as str or arrays of str, the rest as tensors;
    fields left None are not sent."""
    job: Dict[str, Any] = {"op": op, "inputs": {k: list(v) if isinstance(v, tuple) and is_text(v) else
                                                v if is_text(v) else to_tensor(v) for k, v in inputs.items()}}
    job.update((k, v) for k, v in fields.items() if v is not None)
    return msgpack.packb(job, use_bin_type=True)


