"""Evaluation speed and correctness: nhl.metrics against a per-query reference loop.

Targets (METHOD.md section 5, brief of nhl.metrics):
  1. mAP@ALL, both tie modes, 1,000 queries x 69,000 items, lengths 8..128 (prefixes): < 5 s.
  2. Index-order mAP equals the per-query CalcTopMap-style loop (benchmarks/reference.py) to
     1e-9, and is >= 20x faster per query.
Also: PR-by-radius time, and its equality with a per-query loop on a few queries.

Run: ``python -m benchmarks.bench_eval [--codes codes.npz] [--quick]``
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: python benchmarks/bench_eval.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import pandas as pd

from benchmarks import reference
from benchmarks.common import (
    add_common_args,
    load_codes,
    machine,
    median_times,
    print_table,
    write_json,
)
from nhl import metrics

BITS = (8, 16, 32, 64, 128)


def row(measure: str, value: float, unit: str, target: str = "", met: bool | None = None):
    return {"measure": measure, "value": value, "unit": unit, "target": target, "met": met}


def main(argv: list[str] | None = None) -> dict:
    parser = add_common_args(argparse.ArgumentParser(description=__doc__.splitlines()[0]))
    parser.add_argument(
        "--ref-queries", type=int, default=None, help="queries for the reference loop"
    )
    args = parser.parse_args(argv)
    n_q, n_db = (300, 20_000) if args.quick else (1000, 69_000)
    repeats = args.repeats or (2 if args.quick else 3)
    n_ref = args.ref_queries or (40 if args.quick else 100)
    codes = load_codes(args, n_q, n_db)
    q, db, ql, dl = codes.query_codes, codes.db_codes, codes.query_labels, codes.db_labels
    print(f"codes: {codes.source}; {len(q)} queries x {len(db)} items, {q.shape[1]} bits")

    # ---- target 1: the whole table, both tie modes, all lengths
    times = median_times(
        {
            "both tie modes": lambda: metrics.map_table(q, db, ql, dl, BITS),
            "ties=average": lambda: metrics.map_per_length(q, db, ql, dl, BITS),
            "ties=index": lambda: metrics.map_per_length(q, db, ql, dl, BITS, ties="index"),
            "PR by radius (128 bits)": lambda: metrics.precision_recall_by_radius(q, db, ql, dl),
        },
        repeats=repeats,
        warmup=0,
    )
    cpu0 = time.process_time()  # CPU seconds of one call: less sensitive to other jobs
    table = metrics.map_table(q, db, ql, dl, BITS)
    cpu_both = time.process_time() - cpu0
    maps = pd.DataFrame(
        {"bits": BITS, **{f"mAP ({t})": [table[t][b] for b in BITS] for t in metrics.TIES}}
    )
    print_table(f"mAP@ALL by length ({'synthetic' if codes.synthetic else 'trained'} codes)", maps)

    # ---- target 2: index order = reference loop (on a subset of queries), and speed per query:
    # the reference's per-query time on the subset against ours on the full query set
    sub = slice(0, min(n_ref, len(q)))
    rows, max_diff = [], 0.0
    for bits in BITS:
        qb, dbb = q[:, :bits], db[:, :bits]
        t0 = time.perf_counter()
        ref_ap = reference.calc_topmap_per_query(qb[sub], dbb, ql[sub], dl)
        t_ref = (time.perf_counter() - t0) / len(ref_ap)
        ours = metrics.average_precision(qb[sub], dbb, ql[sub], dl, ties="index")
        diff = float(np.max(np.abs(ours - ref_ap)))
        max_diff = max(max_diff, diff)
        t_ours = median_times(
            {
                "ours": lambda qb=qb, dbb=dbb: metrics.average_precision(
                    qb, dbb, ql, dl, ties="index"
                )
            },
            repeats=repeats,
            warmup=0,
        )["ours"] / len(q)
        rows.append(
            {
                "bits": bits,
                "ref ms/query": 1e3 * t_ref,
                "ours ms/query": 1e3 * t_ours,
                "speed-up": t_ref / t_ours,
                "max |AP diff|": diff,
            }
        )
    ref_table = pd.DataFrame(rows)
    print_table(
        f"index-order AP vs reference loop (reference on {len(ref_ap)} queries, ours on "
        f"{len(q)}; ties by index)",
        ref_table,
    )
    total_speedup = ref_table["ref ms/query"].sum() / ref_table["ours ms/query"].sum()

    # PR by radius vs a loop on a few queries
    few = slice(0, 20)
    p_ref, r_ref = reference.pr_by_radius(q[few, :16], db[:, :16], ql[few], dl)
    p, r = metrics.precision_recall_by_radius(q[few, :16], db[:, :16], ql[few], dl)
    pr_diff = float(max(np.max(np.abs(p - p_ref)), np.max(np.abs(r - r_ref))))

    slowest = ref_table.loc[ref_table["speed-up"].idxmin()]
    summary = pd.DataFrame(
        [
            row(
                f"map_table, both ties, {len(BITS)} lengths",
                times["both tie modes"],
                "s",
                f"< 5 s ({n_q} x {n_db // 1000}k)",
                (times["both tie modes"] < 5.0) if not args.quick else None,
            ),
            row(f"  same, CPU time of one call ({n_q} x {n_db // 1000}k)", cpu_both, "s"),
            row("map_per_length ties=average", times["ties=average"], "s"),
            row("map_per_length ties=index", times["ties=index"], "s"),
            row("PR by radius, 128 bits", times["PR by radius (128 bits)"], "s"),
            row("index AP: max |ours - reference|", max_diff, "", "<= 1e-9", max_diff <= 1e-9),
            row(
                "index AP speed-up per query, 5 lengths together",
                total_speedup,
                "x",
                ">= 20x",
                total_speedup >= 20,
            ),
            row(
                f"index AP speed-up per query, slowest ({int(slowest['bits'])} bits)",
                slowest["speed-up"],
                "x",
            ),
            row(
                "PR by radius: max |ours - loop| (20 queries, 16 bits)",
                pr_diff,
                "",
                "<= 1e-12",
                pr_diff <= 1e-12,
            ),
        ]
    )
    print_table(f"bench_eval summary ({codes.source})", summary)
    result = {
        "codes": codes.describe(),
        "machine": machine(),
        "repeats": repeats,
        "seconds": times,
        "cpu_seconds_map_table_both": cpu_both,
        "map": table,
        "reference": ref_table,
        "summary": summary,
    }
    write_json("bench_eval_quick" if args.quick else "bench_eval", result)
    return result


if __name__ == "__main__":
    main()
