"""The checker's wire format: NumPy arrays and JSON, never pickles.

A message is one ``.npz`` archive (written with :func:`numpy.savez`, read back with
``allow_pickle=False``): the arrays under their own names plus ``__meta__``, a UTF-8 JSON object
stored as a ``uint8`` array. Frames on a pipe are an 8-byte little-endian length and the message.
Nothing the user's code returns is ever unpickled by the checker.
"""

from __future__ import annotations

import io
import json

import numpy as np

__all__ = ["encode", "decode", "write_frame", "read_frame"]

_META = "__meta__"


def encode(meta: dict | None = None, arrays: dict | None = None) -> bytes:
    """Pack a JSON-able ``meta`` dict and numeric ``arrays`` into npz bytes."""
    buf = io.BytesIO()
    payload = {k: np.ascontiguousarray(v) for k, v in (arrays or {}).items() if v is not None}
    for k, v in payload.items():
        if v.dtype.kind not in "fiub":
            raise TypeError(f"wire: array {k!r} has dtype {v.dtype}; only numbers travel")
    raw = json.dumps(meta or {}, default=_json_default).encode("utf-8")
    payload[_META] = np.frombuffer(raw, dtype=np.uint8)
    np.savez(buf, **payload)
    return buf.getvalue()


def decode(data: bytes) -> tuple[dict, dict]:
    """Unpack npz bytes into ``(meta, arrays)``; object arrays are refused (no pickles)."""
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    raw = arrays.pop(_META, np.zeros(0, np.uint8))
    meta = json.loads(raw.tobytes().decode("utf-8")) if raw.size else {}
    return meta, arrays


def write_frame(stream, data: bytes) -> None:
    """Write one length-prefixed frame and flush."""
    stream.write(len(data).to_bytes(8, "little"))
    stream.write(data)
    stream.flush()


def read_frame(stream) -> bytes | None:
    """Read one frame; ``None`` at end of stream (the other side closed or died)."""
    head = _read_exact(stream, 8)
    if head is None:
        return None
    return _read_exact(stream, int.from_bytes(head, "little"))


def _read_exact(stream, n: int) -> bytes | None:
    """Exactly ``n`` bytes, or None at end of stream."""
    chunks, left = [], n
    while left > 0:
        b = stream.read(left)
        if not b:
            return None
        chunks.append(b)
        left -= len(b)
    return b"".join(chunks)


def _json_default(o):
    """NumPy scalars and tuples in meta become plain JSON values."""
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"wire: {type(o).__name__} is not JSON-serializable")
