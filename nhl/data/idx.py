"""Reader for the IDX format of (Fashion-)MNIST, gzip-compressed or raw.

The IDX layout is a 4-byte magic number (two zero bytes, a type code, the number of
dimensions), one big-endian ``int32`` per dimension, then the values in C order. Integrity is
checked on the *decompressed* bytes, so a file recompressed by a distribution (Debian's
``dataset-fashion-mnist`` does this) still verifies while its ``.gz`` checksum would not.
"""

from __future__ import annotations

import gzip
import hashlib
import zlib
from pathlib import Path

import numpy as np

__all__ = ["IDX_DTYPES", "parse_idx", "read_idx", "read_idx_bytes", "write_idx"]

#: IDX type codes and the big-endian numpy dtypes they stand for.
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

_GZIP_MAGIC = b"\x1f\x8b"


def read_idx_bytes(path: str | Path) -> bytes:
    """Return the decompressed content of an IDX file (gzip is detected by its magic bytes)."""
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] != _GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as err:
        raise ValueError(
            f"{path} is a damaged gzip file ({err}); it is probably truncated by an interrupted "
            f"download or copy. Delete it and fetch it again."
        ) from err


def read_idx(
    path: str | Path, expected_sha256: str | None = None, fix_hint: str = ""
) -> np.ndarray:
    """Read an IDX file (``.gz`` or uncompressed) into a numpy array in native byte order.

    ``expected_sha256`` is the checksum of the decompressed bytes; a mismatch raises
    ``ValueError`` naming the file, both checksums and how to fix it (``fix_hint`` is appended).
    A header whose dimensions disagree with the amount of data also raises ``ValueError``.
    """
    path = Path(path)
    data = read_idx_bytes(path)
    if expected_sha256 is not None:
        actual = hashlib.sha256(data).hexdigest()
        if actual != expected_sha256.lower():
            raise ValueError(
                f"{path} is corrupt or truncated: the SHA-256 of its decompressed content is "
                f"{actual}, expected {expected_sha256.lower()}. Delete the file and fetch it "
                f"again. {fix_hint}".rstrip()
            )
    return parse_idx(data, str(path))


def parse_idx(data: bytes, source: str = "<bytes>") -> np.ndarray:
    """Decode IDX bytes; ``source`` names the file in error messages."""
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError(
            f"{source} is not an IDX file: its first bytes {data[:4].hex() or '(empty)'} are not "
            "a valid IDX magic number (expected 0000 followed by a type code and a rank)"
        )
    type_code, ndim = data[2], data[3]
    if type_code not in IDX_DTYPES:
        raise ValueError(
            f"{source} has the unknown IDX type code 0x{type_code:02x}; "
            f"known codes are {', '.join(f'0x{c:02x}' for c in IDX_DTYPES)}"
        )
    if ndim == 0:
        raise ValueError(f"{source} declares 0 dimensions; an IDX array needs at least one")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{source} is truncated inside its header ({len(data)} bytes)")
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">i4", count=ndim, offset=4))
    dtype = IDX_DTYPES[type_code]
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(data) - header != expected:
        raise ValueError(
            f"{source} holds {len(data) - header} bytes of values but its header declares shape "
            f"{dims} of {dtype.name} ({expected} bytes): the file is truncated or corrupt. "
            "Delete it and fetch it again."
        )
    arr = np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)
    return arr.astype(dtype.newbyteorder("="), copy=True)


def write_idx(path: str | Path, array: np.ndarray, compress: bool | None = None) -> Path:
    """Write ``array`` as an IDX file (gzip-compressed when ``compress`` or the name ends in .gz).

    Used by the tests to build tiny files; the inverse of :func:`read_idx`.
    """
    path = Path(path)
    arr = np.asarray(array)
    codes = {dt.newbyteorder("="): code for code, dt in IDX_DTYPES.items()}
    native = arr.dtype.newbyteorder("=")
    if native not in codes:
        raise ValueError(
            f"array dtype {arr.dtype} has no IDX type code; "
            "use uint8, int8, int16, int32, float32 or float64"
        )
    code = codes[native]
    be = IDX_DTYPES[code]
    header = bytes([0, 0, code, arr.ndim]) + np.asarray(arr.shape, dtype=">i4").tobytes()
    payload = header + np.ascontiguousarray(arr, dtype=be).tobytes()
    if compress is None:
        compress = path.suffix == ".gz"
    path.write_bytes(gzip.compress(payload) if compress else payload)
    return path
