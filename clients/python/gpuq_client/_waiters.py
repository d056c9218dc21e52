"""Waiters on one reply list, matched to results by job id.

A client owns one reply list per queue and one reader that pops every result
pushed there and hands each to the waiter for its id. A waiter that gives up
removes itself; a result nobody waits for any more is dropped."""
from __future__ import annotations

import os
import threading
import uuid
from typing import Any, Dict, List, Optional

from ._protocol import Result, decode_result


class Waiters:
    def __init__(self, key: str):
        self.key = key
        self.by_id: Dict[str, List[Any]] = {}
        self.lock = threading.Lock()

    @staticmethod
    def reply_key(prefix: str, queue: str) -> str:
        return f"{prefix}:{{{queue}}}:reply:{os.getpid()}:{uuid.uuid4().hex}"

    def add(self, job_id: str, fut: Any) -> None:
        with self.lock:
            self.by_id.setdefault(job_id, []).append(fut)

    def discard(self, job_id: str, fut: Any) -> None:
        with self.lock:
            futs = self.by_id.get(job_id)
            if futs and fut in futs:
                futs.remove(fut)
                if not futs:
                    del self.by_id[job_id]

    def take(self, raw: bytes) -> "Optional[tuple[Any, Result]]":
        """The waiter for this result (removed) and the result; None to drop it."""
        try:
            res = decode_result(raw)
        except Exception:  # not a result: nothing can wait for it
            return None
        with self.lock:
            futs = self.by_id.get(str(res.id))
            if not futs:
                return None
            fut = futs.pop(0)
            if not futs:
                del self.by_id[str(res.id)]
        return fut, res

    def pending(self) -> int:
        with self.lock:
            return sum(len(f) for f in self.by_id.values())
