"""Write benchmarks/README.md from the latest results in benchmarks/results/*.json.

    python -m benchmarks.report
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"

INTRO = """# Benchmarks

Hashing exists to make retrieval fast, so `nhl` measures its evaluation, search and training
against references, side by side in one run (medians of several repeats, interleaved so drifts in
machine load hit every contender alike). Each script prints a table and writes JSON to
`benchmarks/results/`; this page is generated from those files by `python -m benchmarks.report`.

Run them all with `make bench`, or one at a time:

```bash
python -m benchmarks.bench_eval   --codes runs/fashion-mnist/csq/<nested run folder>
python -m benchmarks.bench_search --codes runs/fashion-mnist/csq/<nested run folder>
python -m benchmarks.bench_funnel --codes runs/fashion-mnist/csq/<nested run folder>
python -m benchmarks.bench_train
python -m benchmarks.report
```

Without `--codes` the first three scripts use synthetic clustered codes of the same shape (and
say so). The slow reference implementations used only for comparison live in
`benchmarks/reference.py`.
"""


def _load(name: str) -> dict | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _md(rows, floatfmt: str = ".4g") -> str:
    frame = pd.DataFrame(rows)
    frame.columns = [str(c).replace("|", "\\|") for c in frame.columns]  # pipes would split cells
    frame = frame.apply(lambda col: col.map(lambda v: v.replace("|", "\\|") if isinstance(v, str) else v))
    return frame.to_markdown(index=False, floatfmt=floatfmt)


def _machine(d: dict) -> str:
    m = d.get("machine", {})
    load = m.get("load_average_1_5_15")
    load = ", ".join(f"{x:.1f}" for x in load) if load else "?"
    return (f"Machine: {m.get('processor', '?')}, {m.get('cpu_count', '?')} cores, load average "
            f"(1/5/15 min) {load}; Python {m.get('python', '?')}, numpy {m.get('numpy', '?')}, "
            f"torch {m.get('torch', '?')}, faiss {m.get('faiss', '?')}.")


def _codes(d: dict) -> str:
    c = d.get("codes", {})
    return (f"Codes: {c.get('source', '?')}; {c.get('n_query', '?')} queries x {c.get('n_db', '?')} "
            f"database items, {c.get('bits', '?')} bits.")


def sections() -> list[str]:
    out = [INTRO]
    d = _load("bench_eval")
    if d:
        out += ["## 1. Evaluation: mAP@ALL, both tie modes, five lengths", _codes(d), _machine(d),
                "", _md(d["summary"]), "", "Per length against the per-query reference loop "
                "(index-order ties, identical numbers):", "", _md(d["reference"])]
    d = _load("bench_search")
    if d:
        out += ["## 2. Exact Hamming search: numpy popcount backend vs faiss IndexBinaryFlat",
                _codes(d), _machine(d), f"k = {d.get('k')}.", "", _md(d["table"]), "",
                f"Target (numpy within 2x of faiss, identical distances) met: {d.get('target_met')}"
                f" (against faiss on one thread: {d.get('target_met_vs_one_thread')})."]
    d = _load("bench_funnel")
    if d:
        out += ["## 3. Nested coarse-to-fine search (funnel) vs exhaustive search", _codes(d),
                _machine(d), "", "### 69,000 items", "", _md(d["small"]), "",
                f"### {d['big_database']['n']:,} items (database made by flipping bits with "
                f"p = {d['big_database']['flip']}, {d['big_database']['queries']} queries)", "",
                _md(d["big"]), "", "Verdict: " + "; ".join(
                    f"{k}: {'met' if v.get('met') else 'not met'} ({v.get('note', '')})"
                    for k, v in d["verdict"].items())]
    d = _load("bench_train")
    if d:
        steps = [{"variant": k, "ms/step": v} for k, v in d["step_ms"].items()]
        out += ["## 4. Training step cost (default CNN, batch 64)", _machine(d), "", _md(steps), "",
                f"Full NHL / plain nested = {d['full_over_plain']:.3f} (goal <= 1.25); full NHL / "
                f"single 128-bit = {d['full_over_single']:.3f} (goal <= 1.5): "
                f"{'met' if d['target4_met'] else 'not met'}.",
                "## 5. Training speed-up: one nested model vs K single-length models",
                f"Equal epochs ({d['config']['epochs']}) and selection rule, "
                f"{d['config']['dataset']} ({d['config']['protocol'] or 'default'} split), "
                f"method {d['config']['method']}.", "", _md(d["compare"]), "",
                f"Training seconds: baselines {d['baseline_seconds']:.1f}, nested "
                f"{d['nested_seconds']:.1f}, speed-up {d['speedup']:.2f}x (the paper claims 5-8x)."]
    return out


def main() -> None:
    text = "\n\n".join(s for s in sections()) + "\n"
    (HERE / "README.md").write_text(text.replace("\n\n\n", "\n\n"))
    print(f"wrote {HERE / 'README.md'}")


if __name__ == "__main__":
    main()
