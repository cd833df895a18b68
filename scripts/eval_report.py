"""Merges the JSON results of scripts/eval.py (one file per dataset, written with --json-out) into a
Markdown report and a plot of nDCG@10 per method and dataset.

Usage (what `make eval` runs after eval.py on every judged set):

    python scripts/eval_report.py OUT_DIR RESULTS.json [RESULTS.json ...]

Writes
  OUT_DIR/eval-report.md   a summary table (nDCG@10, method x dataset), the per-query wins and losses of
                           each hybrid method against the better leg, then one table per dataset with
                           nDCG@10, Recall@100, MRR@10 and the median time per query of every method;
  OUT_DIR/eval-ndcg.png    a grouped bar chart of nDCG@10: one group per dataset, one bar per method.

The plot needs matplotlib (clients/python/requirements-eval.txt, installed by `make eval-deps`); it is
drawn with the Agg backend, so no display is needed.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import NoReturn, Sequence

REPORT_NAME = "eval-report.md"
PLOT_NAME = "eval-ndcg.png"
METRICS = (("ndcg@10", "nDCG@10"), ("recall@100", "Recall@100"), ("mrr@10", "MRR@10"))


def fail(msg: str) -> NoReturn:
    print(f"eval_report.py: error: {msg}", file=sys.stderr)
    sys.exit(2)


def load(path: str) -> dict:
    """One eval.py --json-out file, checked for the fields the report uses."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except OSError as e:
        fail(f"cannot read {path}: {e.strerror}")
    except json.JSONDecodeError as e:
        fail(f"{path}: not JSON ({e})")
    if not isinstance(data, dict) or not isinstance(data.get("methods"), list) or not data["methods"]:
        fail(f"{path}: not a results file of scripts/eval.py --json-out (no 'methods' list)")
    for key in ("dataset", "split", "n_queries"):
        if key not in data:
            fail(f"{path}: missing field '{key}'")
    for m in data["methods"]:
        missing = [k for k in ("name",) + tuple(k for k, _ in METRICS) if k not in m]
        if missing:
            fail(f"{path}: a method lacks {', '.join(missing)}")
    data["_path"] = path
    return data


def set_label(run: dict) -> str:
    """The column name of a dataset: its directory name, with the split when it is not 'test'."""
    return run["dataset"] if run["split"] == "test" else f"{run['dataset']} ({run['split']})"


def method_order(runs: Sequence[dict]) -> list[str]:
    """Every method name, in the order of first appearance (eval.py: bm25, vector, then the hybrids)."""
    names: list[str] = []
    for run in runs:
        for m in run["methods"]:
            if m["name"] not in names:
                names.append(m["name"])
    return names


def md_table(headers: Sequence[str], rows: Sequence[Sequence], align: str) -> list[str]:
    """A Markdown table; `align` has one char per column, 'l' or 'r'."""
    sep = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join(sep) + " |"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return lines


def versus_line(m: dict, n_queries: int) -> str:
    v = m["vs_better_leg"]
    return (f"{m['name']} against {v['leg']}: {v['better']} better, {v['worse']} worse, {v['equal']} equal "
            f"(of {n_queries} queries)")


def report(runs: Sequence[dict], plot_name: str | None) -> str:
    names = method_order(runs)
    labels = [set_label(r) for r in runs]
    out = ["# Retrieval quality", ""]
    models = sorted({r["model"] for r in runs if r.get("model")})
    out.append("Written by `scripts/eval_report.py` from the results of `scripts/eval.py` ("
               + ", ".join(os.path.basename(r["_path"]) for r in runs) + "). "
               "Metrics as trec_eval defines them (nDCG@10 with graded gain, Recall@100, MRR@10), mean over "
               "the judged queries of each set; a document ranks at its best chunk."
               + (f" Embedding model: {', '.join(models)}." if models else ""))
    out.append("")

    # Summary: nDCG@10, method x dataset; the best of each set in bold.
    out += ["## nDCG@10 per method and set", ""]
    rows = []
    best = {}
    for label, run in zip(labels, runs):
        best[label] = max(m["ndcg@10"] for m in run["methods"])
    for name in names:
        row = [name]
        for label, run in zip(labels, runs):
            m = next((m for m in run["methods"] if m["name"] == name), None)
            if m is None:
                row.append("–")
            else:
                cell = f"{m['ndcg@10']:.4f}"
                row.append(f"**{cell}**" if m["ndcg@10"] >= best[label] - 1e-12 else cell)
        rows.append(row)
    out += md_table(["method"] + labels, rows, "l" + "r" * len(labels))
    out += ["", "Best of each set in bold."]
    if plot_name:
        out += ["", f"![nDCG@10 per method and set]({plot_name})"]
    out.append("")

    # Wins and losses of every hybrid method against the better leg of its set.
    out += ["## Hybrid against the better leg, per query (nDCG@10)", ""]
    out.append("For each query, is the hybrid's nDCG@10 higher, lower or the same as that of the better of "
               "the two legs (the leg with the higher mean nDCG@10 on that set)?")
    out.append("")
    for label, run in zip(labels, runs):
        for m in run["methods"]:
            if "vs_better_leg" in m:
                out.append(f"- {label}: {versus_line(m, run['n_queries'])}")
    out.append("")

    # One table per dataset.
    for label, run in zip(labels, runs):
        out += [f"## {label}", ""]
        facts = [f"split {run['split']}", f"{run['n_queries']} queries"]
        if "n_docs" in run and "n_chunks" in run:
            facts.append(f"{run['n_docs']} documents / {run['n_chunks']} chunks stored")
        if "depth" in run:
            facts.append(f"k = {run['depth']} chunks per query")
        out += ["; ".join(facts) + ".", ""]
        rows = []
        for m in run["methods"]:
            ms = m.get("median_ms")
            rows.append([m["name"]] + [f"{m[k]:.4f}" for k, _ in METRICS]
                        + ["–" if ms is None else f"{ms:.1f}", m.get("settings", "")])
        out += md_table(["method"] + [h for _, h in METRICS] + ["median ms/query", "settings"], rows,
                        "l" + "r" * (len(METRICS) + 1) + "l")
        out.append("")
    return "\n".join(out)


def plot(runs: Sequence[dict], path: str) -> None:
    """Grouped bars of nDCG@10: one group per dataset, one bar (with its value) per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = method_order(runs)
    labels = [set_label(r) for r in runs]
    width = 0.8 / len(names)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.5 + 2.0 * len(runs)), 4.0), dpi=110)
    top = 0.0
    for i, name in enumerate(names):
        xs, ys = [], []
        for j, run in enumerate(runs):
            m = next((m for m in run["methods"] if m["name"] == name), None)
            if m is not None:
                xs.append(j - 0.4 + width * (i + 0.5))
                ys.append(m["ndcg@10"])
        if not xs:
            continue
        top = max(top, max(ys))
        bars = ax.bar(xs, ys, width * 0.92, label=name)
        ax.bar_label(bars, fmt="%.3f", fontsize=7, padding=2)
    ax.set_xticks(range(len(runs)), labels)
    ax.set_xlabel("dataset")
    ax.set_ylabel("nDCG@10")
    ax.set_ylim(0, min(1.0, top * 1.35) if top > 0 else 1.0)
    ax.set_title("nDCG@10 per method and dataset")
    ax.legend(fontsize=8, ncol=2, loc="upper left", frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out_dir", help="where eval-report.md and eval-ndcg.png are written (created if needed)")
    p.add_argument("results", nargs="+", metavar="JSON", help="files written by scripts/eval.py --json-out")
    args = p.parse_args(argv)

    runs: list[dict] = []
    for path in args.results:
        run = load(path)
        same = [r for r in runs if set_label(r) == set_label(run)]
        if same:  # the same dataset and split twice: the later file wins
            print(f"warning: {path} repeats {set_label(run)} of {same[0]['_path']}; using {path}", file=sys.stderr)
            runs = [r for r in runs if r not in same]
        runs.append(run)

    os.makedirs(args.out_dir, exist_ok=True)
    report_path = os.path.join(args.out_dir, REPORT_NAME)
    plot_path = os.path.join(args.out_dir, PLOT_NAME)
    with open(report_path, "w", encoding="utf-8") as fh:
        fh.write(report(runs, PLOT_NAME))
    try:
        plot(runs, plot_path)
    except ImportError:
        fail(f"matplotlib is not installed, so {plot_path} was not drawn ({report_path} was written): "
             "run `make eval-deps`")
    print()
    print(f"report: {os.path.abspath(report_path)}")
    print(f"plot:   {os.path.abspath(plot_path)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
