"""Exact Hamming k-NN: the pure numpy backend of HammingIndex against faiss.IndexBinaryFlat.

Target: on 69,000 x 128-bit codes, 1,000 queries, k = 100, the numpy backend within 2x of
faiss's time (faiss with its default threads; the numpy backend uses one core, so faiss on one
thread is shown too), with identical distances and indices (ties broken by database index).
Also shown for every prefix length 8..128 (faiss needs whole bytes, so all of them qualify).

Run: ``python -m benchmarks.bench_search [--codes codes.npz] [--quick]``
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: python benchmarks/bench_search.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import faiss
import numpy as np
import pandas as pd

from benchmarks.common import (
    add_common_args,
    load_codes,
    machine,
    median_times,
    print_table,
    write_json,
)
from nhl.retrieval import HammingIndex

BITS = (8, 16, 32, 64, 128)


def main(argv: list[str] | None = None) -> dict:
    parser = add_common_args(argparse.ArgumentParser(description=__doc__.splitlines()[0]))
    parser.add_argument("--k", type=int, default=100)
    args = parser.parse_args(argv)
    n_q, n_db = (300, 20_000) if args.quick else (1000, 69_000)
    repeats = args.repeats or (3 if args.quick else 5)
    codes = load_codes(args, n_q, n_db)
    q, db = codes.query_codes, codes.db_codes
    print(f"codes: {codes.source}; {len(q)} queries x {len(db)} items, k={args.k}")

    rows = []
    for bits in BITS:
        t0 = time.perf_counter()
        flat = HammingIndex(db[:, :bits], backend="faiss")
        t_build_f = time.perf_counter() - t0
        t0 = time.perf_counter()
        pure = HammingIndex(db[:, :bits], backend="numpy")
        t_build_n = time.perf_counter() - t0
        qb = q[:, :bits]

        def one_thread(f=flat, qb=qb):
            threads = faiss.omp_get_max_threads()
            faiss.omp_set_num_threads(1)
            try:
                return f.search(qb, args.k)
            finally:
                faiss.omp_set_num_threads(threads)

        times = median_times(
            {
                "faiss": lambda f=flat, qb=qb: f.search(qb, args.k),
                "faiss 1 thread": one_thread,
                "numpy": lambda p=pure, qb=qb: p.search(qb, args.k),
            },
            repeats=repeats,
        )
        d_f, i_f = flat.search(qb, args.k)
        d_n, i_n = pure.search(qb, args.k)
        rows.append(
            {
                "bits": bits,
                "faiss s": times["faiss"],
                "numpy s": times["numpy"],
                "faiss 1 thread s": times["faiss 1 thread"],
                "numpy / faiss": times["numpy"] / times["faiss"],
                "numpy / faiss 1 thread": times["numpy"] / times["faiss 1 thread"],
                "same distances": bool(np.array_equal(d_f, d_n)),
                "same indices": bool(np.array_equal(i_f, i_n)),
                "build faiss s": t_build_f,
                "build numpy s": t_build_n,
            }
        )
    table = pd.DataFrame(rows)
    label = "synthetic" if codes.synthetic else "trained"
    print_table(f"HammingIndex.search, {len(q)} queries, k={args.k} ({label} codes)", table)
    at128 = table.set_index("bits").loc[128]
    same = bool(at128["same distances"] and at128["same indices"])
    ok = bool(at128["numpy / faiss"] <= 2.0 and same)
    ok_1 = bool(at128["numpy / faiss 1 thread"] <= 2.0 and same)
    print(
        f"\n128 bits: numpy backend {at128['numpy s']:.3f} s vs faiss {at128['faiss s']:.3f} s "
        f"= {at128['numpy / faiss']:.2f}x (target <= 2x): {'met' if ok else 'NOT met'}; vs "
        f"faiss on one thread {at128['faiss 1 thread s']:.3f} s = "
        f"{at128['numpy / faiss 1 thread']:.2f}x: {'met' if ok_1 else 'NOT met'}; identical "
        f"results: {same}{' (quick sizes)' if args.quick else ''}"
    )
    result = {
        "codes": codes.describe(),
        "machine": machine(),
        "k": args.k,
        "repeats": repeats,
        "table": table,
        "target_met": ok if not args.quick else None,
        "target_met_vs_one_thread": ok_1 if not args.quick else None,
    }
    write_json("bench_search_quick" if args.quick else "bench_search", result)
    return result


if __name__ == "__main__":
    main()
