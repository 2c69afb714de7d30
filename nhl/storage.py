"""Storage arithmetic of hash codes vs float features (docs/method.md §1).

A b-bit code packs into ceil(b / 8) bytes. Nested codes store only the longest code, because
every shorter code is its prefix; separate single-length models would store each length.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from .validation import check_bit_list, check_positive_int

__all__ = ["code_bytes", "human_bytes", "storage_table"]


def code_bytes(bits: int) -> int:
    """Bytes per item of a packed ``bits``-bit code: ``ceil(bits / 8)``."""
    bits = check_positive_int(bits, "bits")
    return -(-bits // 8)


def human_bytes(n: float) -> str:
    """``1536 -> '1.5 KiB'``: bytes in binary units, three significant digits."""
    if n < 0:
        raise ValueError(f"n must be a non-negative number of bytes, got {n}")
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{int(n)} B" if unit == "B" else f"{n:.3g} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def storage_table(
    bit_list: Sequence[int], n_items: int, feature_dim: int, float_bytes: int = 4
) -> pd.DataFrame:
    """Bytes per item and for ``n_items`` items: each code length, all lengths, float features.

    Rows: one per length; ``all lengths, separate codes`` (sum over lengths, what K
    single-length models need); ``all lengths, nested code`` (the longest code only);
    ``float32 features (d)``. Columns: ``bits per item``, ``bytes per item``, ``total bytes``,
    ``total`` (human readable), ``x smaller than features``.
    """
    bits = check_bit_list(bit_list)
    n_items = check_positive_int(n_items, "n_items")
    feature_dim = check_positive_int(feature_dim, "feature_dim")
    float_bytes = check_positive_int(float_bytes, "float_bytes")
    feature_item = feature_dim * float_bytes
    rows = [(f"{b}-bit code", b, code_bytes(b)) for b in bits]
    if len(bits) > 1:
        rows.append(("all lengths, separate codes", sum(bits), sum(code_bytes(b) for b in bits)))
        rows.append(("all lengths, nested code", bits[-1], code_bytes(bits[-1])))
    rows.append((f"float{8 * float_bytes} features (d={feature_dim})",
                 8 * feature_item, feature_item))
    table = pd.DataFrame(rows, columns=["representation", "bits per item", "bytes per item"])
    table["total bytes"] = table["bytes per item"] * n_items
    table["total"] = table["total bytes"].map(human_bytes)
    table["x smaller than features"] = feature_item / table["bytes per item"]
    return table.set_index("representation")
