"""The ``status.checkpoint`` string of an instance: the engine snapshot as compact JSON, compressed
once it is large.

Every checkpoint write costs the API server (and etcd, which keeps every revision for minutes) in
proportion to its size, and a fork's branch frames repeat the same keys, so a checkpoint over
:data:`COMPRESS_ABOVE` bytes is stored as ``zlib:`` and the base64 of its zlib compression. The
operator writes it (:mod:`plait_operator.status`); the operator and the client read it.
"""

from __future__ import annotations

import base64
import json
import zlib
from typing import Any

#: Checkpoints whose JSON is over this many bytes are compressed.
COMPRESS_ABOVE = 8 * 1024
_ZLIB = "zlib:"


def dump(data: dict[str, Any]) -> str:
    text = json.dumps(data, separators=(",", ":"))
    if len(text) <= COMPRESS_ABOVE:
        return text
    return _ZLIB + base64.b64encode(zlib.compress(text.encode(), 6)).decode()


def load(text: str) -> dict[str, Any]:
    if text.startswith(_ZLIB):
        text = zlib.decompress(base64.b64decode(text[len(_ZLIB) :])).decode()
    data: dict[str, Any] = json.loads(text)
    return data
