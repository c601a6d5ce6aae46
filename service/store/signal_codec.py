"""Compact, self-describing encoding of raw signal blocks for the database (numpy only).

``q16dz``: the block's range is mapped onto 16-bit integers (``offset`` + ``scale`` * q), the
integers are first-differenced and zlib-compressed. ADC counts (whole numbers spanning at
most 65535) are kept exactly (scale 1). The header (``<ddI``: offset, scale, n)
travels in the blob, so a chunk decodes on its own. The rounding error is at most half a
step of range/65535 for other data: far below one step of a 12-bit ADC, so the stored night is, for the
detector and for a viewer, the night that was sampled. One channel per blob.
"""

from __future__ import annotations

import struct
import zlib
from typing import Final

import numpy as np

ENCODING: Final = "q16dz"
_HEADER: Final = struct.Struct("<ddI")
_LEVELS: Final = 65535


class CodecError(ValueError):
    """A blob that is not a valid encoding (wrong name, truncated, corrupt)."""


def encode(samples: np.ndarray) -> tuple[str, bytes]:
    """Encode a 1-D block; returns ``(encoding, blob)``. NaN is stored as the block's minimum."""
    x = np.asarray(samples, dtype=np.float64).reshape(-1)
    finite = x[np.isfinite(x)]
    lo = float(finite.min()) if finite.size else 0.0
    hi = float(finite.max()) if finite.size else 0.0
    integral = hi - lo <= _LEVELS and bool(np.all(finite == np.rint(finite)))
    scale = 1.0 if integral or hi <= lo else (hi - lo) / _LEVELS
    q = np.rint((np.nan_to_num(x, nan=lo) - lo) / scale).clip(0, _LEVELS).astype(np.int32)
    d = np.diff(q, prepend=0).astype(np.int32)
    # Differences of 16-bit values fit in 17 bits; most are small, so int32 + zlib packs well.
    payload = zlib.compress(d.astype("<i4").tobytes(), 6)
    return ENCODING, _HEADER.pack(lo, scale, x.size) + payload


def decode(encoding: str, blob: bytes) -> np.ndarray:
    """The float32 samples of a blob made by :func:`encode`; CodecError if it is not one."""
    if encoding != ENCODING:
        raise CodecError(f"unknown signal encoding {encoding!r} (expected {ENCODING!r})")
    if len(blob) < _HEADER.size:
        raise CodecError("signal blob is shorter than its header")
    lo, scale, n = _HEADER.unpack_from(blob)
    try:
        d = np.frombuffer(zlib.decompress(blob[_HEADER.size :]), dtype="<i4")
    except zlib.error as exc:
        raise CodecError(f"signal blob is corrupt: {exc}") from exc
    if d.size != n:
        raise CodecError(f"signal blob holds {d.size} samples, header says {n}")
    return (lo + scale * np.cumsum(d, dtype=np.int64)).astype(np.float32)
