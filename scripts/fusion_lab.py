"""Offline fusion lab for rag.hybrid_search (issue #14): export each leg's candidates once, then measure
fusion functions on them without the database.

Usage:

    python scripts/fusion_lab.py export URL [--out .stack/fusion-lab] [--depth 300] [--stress]
    python scripts/fusion_lab.py tune   [--lab .stack/fusion-lab]     # SciFact train, Cranfield, stress sets
    python scripts/fusion_lab.py final  [--lab .stack/fusion-lab]     # + SciFact test, the FINAL methods once

export
    For every query of SciFact train, SciFact test and Cranfield test (the queries eval.py evaluates) it
    stores rag.bm25_search(q, depth) (BM25 score), rag.vector_search(q, depth) (cosine similarity) and
    today's rag.hybrid_search(q, depth, candidates => depth) (the baseline), per chunk: chunk id, document
    id, BEIR id (NULL for chunks of another dataset), chunk index, score and rank (= position).
    With --stress it stores STRESS_SETS instead: SciFact train where one leg searches a degraded query
    (every second word), so that leg is much weaker than the other (the situation of issue #14).
    The datasets are read from ../shared/datasets (--datasets); they must already be ingested
    (scripts/eval.py does that).

tune / final
    Every fusion candidate maps the two legs' candidate lists of one query to fused chunk scores (`rrf`,
    `cc`, `tmm`), ordered with today's tie rules (`rank_chunks`). The chunk ranking becomes a document
    ranking exactly as eval.py does it (max-pooling, other datasets' chunks dropped, the query's own id
    dropped) -- unless the candidate aggregates chunks into documents itself (`aggregate`, `DocLevel`) --
    and is scored with eval.py's metric functions. `tune` never reads SciFact's test qrels; `final`
    evaluates the methods named in FINAL on all three sets, once.

Result (see the report of issue #14): the recommended default is `tmm` = ragbench_core::fusion::convex,
0.2 * bm25 / best_bm25 + 0.8 * (cos + 1) / (best_cos + 1), a chunk missing from a leg taking that leg's
lowest normalised value; the weight 0.2 was tuned on SciFact train + Cranfield test (and checked on the
stress sets, which derive from SciFact train); the floors 0 and -1 are the scores' theoretical minima.
`tmm` reproduces the Rust function's rankings exactly, and `rrf()` today's SQL.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

_HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("ragbench_eval", _HERE / "eval.py")
ev = importlib.util.module_from_spec(_spec)
sys.modules["ragbench_eval"] = ev
_spec.loader.exec_module(ev)

SETS = [("scifact", "train"), ("scifact", "test"), ("cranfield", "test")]
TUNING_SETS = [("scifact", "train"), ("cranfield", "test")]
# Stress sets (robustness, never tuned on): SciFact train with one leg searching a degraded query
# (every second word), so that it is much weaker than the other leg.
STRESS_SETS = [("scifact", "train", "weak-bm25"), ("scifact", "train", "weak-vector")]
BIG = 2**31 - 1  # the SQL's "no rank" in the tie rule

# --------------------------------------------------------------------------------------------------
# Export
# --------------------------------------------------------------------------------------------------

LEG_SQL = {
    "bm25": "SELECT chunk_id::text, document_id::text, chunk_index, score, metadata FROM rag.bm25_search(%s, %s)",
    "vector": "SELECT chunk_id::text, document_id::text, chunk_index, score, metadata FROM rag.vector_search(%s, %s)",
    "hybrid": "SELECT chunk_id::text, document_id::text, chunk_index, score, metadata, bm25_rank, vector_rank "
              "FROM rag.hybrid_search(%s, %s, NULL, 1.0, 1.0, 60, %s)",
}


def degrade(text: str) -> str:
    """Every second word of a query (words 1, 3, 5, ...): a deliberately weakened query for a stress set."""
    return " ".join(text.split()[::2])


def export(url: str, out: str, depth: int, datasets_dir: str, stress: bool = False) -> None:
    """Store the legs' candidates of every set in SETS (with --stress: of STRESS_SETS instead, where one
    leg searches a degraded query and the other the full one; no hybrid baseline is stored for those)."""
    import psycopg

    os.makedirs(out, exist_ok=True)
    conn = psycopg.connect(url, autocommit=True)
    for name, split, variant in (STRESS_SETS if stress else [(n, s, "") for n, s in SETS]):
        d = os.path.join(datasets_dir, name)
        query_text = {str(q["_id"]): q.get("text", "") for q in ev.read_jsonl(os.path.join(d, "queries.jsonl"))}
        qrels = ev.read_qrels(os.path.join(d, "qrels", f"{split}.tsv"))
        qids = [q for q, rel in qrels.items() if q in query_text and any(g > 0 for g in rel.values())]
        chunks: dict[str, list] = {}  # chunk id -> [document uuid, beir id or None, chunk index]
        queries = []
        t0 = time.perf_counter()
        for n, qid in enumerate(qids, 1):
            text = query_text[qid]
            rec = {"id": qid, "text": text, "hybrid": []}
            for leg, sql in LEG_SQL.items():
                if variant and leg == "hybrid":
                    continue
                q = degrade(text) if variant == f"weak-{leg}" else text
                params = (q, depth) + ((depth,) if leg == "hybrid" else ())
                rows = conn.execute(sql, params).fetchall()
                lst = []
                for row in rows:
                    cid, doc, idx, score, meta = row[:5]
                    beir = str(meta["beir_id"]) if isinstance(meta, dict) and meta.get("dataset") == name \
                        and "beir_id" in meta else None
                    chunks.setdefault(cid, [doc, beir, idx])
                    lst.append([cid, score] + ([row[5], row[6]] if leg == "hybrid" else []))
                rec[leg] = lst
            queries.append(rec)
            if n % 100 == 0:
                print(f"  {name}/{split}{variant and ' ' + variant}: {n}/{len(qids)} queries "
                      f"({time.perf_counter() - t0:.0f} s)", flush=True)
        path = os.path.join(out, f"{name}-{split}{variant and '-' + variant}.json")
        with open(path, "w") as fh:
            json.dump({"dataset": name, "split": split, "variant": variant, "depth": depth,
                       "qrels": {q: qrels[q] for q in qids}, "chunks": chunks, "queries": queries}, fh)
        print(f"{path}: {len(queries)} queries, {len(chunks)} distinct chunks", flush=True)


# --------------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------------


@dataclass
class Cand:
    """One chunk of one leg's candidate list."""
    cid: str
    score: float
    rank: int


@dataclass
class Query:
    qid: str
    bm25: list[Cand]
    vector: list[Cand]
    hybrid: list[tuple[str, float, int | None, int | None]]
    qrels: dict[str, int]


@dataclass
class LabSet:
    name: str
    split: str
    chunks: dict[str, tuple[str, str | None, int]]  # chunk id -> (document uuid, beir id, chunk index)
    queries: list[Query]
    variant: str = ""

    @property
    def label(self) -> str:
        return f"{self.name}/{self.split}{self.variant and ' ' + self.variant}"


def load(lab: str, name: str, split: str, variant: str = "") -> LabSet:
    with open(os.path.join(lab, f"{name}-{split}{variant and '-' + variant}.json")) as fh:
        raw = json.load(fh)
    chunks = {c: (v[0], v[1], int(v[2])) for c, v in raw["chunks"].items()}
    qs = []
    for q in raw["queries"]:
        legs = {leg: [Cand(c, float(s), r) for r, (c, s) in enumerate(q[leg], 1)] for leg in ("bm25", "vector")}
        qs.append(Query(q["id"], legs["bm25"], legs["vector"], [tuple(h) for h in q["hybrid"]], raw["qrels"][q["id"]]))
    return LabSet(name, split, chunks, qs, variant)


# --------------------------------------------------------------------------------------------------
# Fusion candidates. Each chunk-level scorer maps one query's two candidate lists to {chunk id: fused
# score}; `rank_chunks` orders them with today's tie rule; `aggregate` turns the chunk ranking into the
# ranking eval.py scores (for "max" that is eval.py's own max-pooling, unchanged).
# --------------------------------------------------------------------------------------------------

Scorer = Callable[[list[Cand], list[Cand]], dict[str, float]]


def rrf(wb: float = 1.0, wv: float = 1.0, k: float = 60.0) -> Scorer:
    """Today's formula: sum over legs of weight / (k + rank); an absent leg adds nothing. Same float
    operations, in the same order, as the SQL (coalesce(b) + coalesce(v))."""
    def score(bm: list[Cand], vec: list[Cand]) -> dict[str, float]:
        b = {c.cid: wb / (k + c.rank) for c in bm}
        v = {c.cid: wv / (k + c.rank) for c in vec}
        return {cid: b.get(cid, 0.0) + v.get(cid, 0.0) for cid in {**b, **v}}
    return score


def _finite(scores: Sequence[float]) -> list[float]:
    return [s for s in scores if math.isfinite(s)]


def normalise(cands: list[Cand], how: str, window: int, floor: float | None = None,
              absent_zero: bool = False) -> tuple[dict[str, float], float]:
    """Leg scores -> normalised scores, and the value a chunk absent from this leg gets.

    how: "mm"  (s - min) / (max - min), min and max over the leg's top `window` candidates;
         "max" s / max (theoretical minimum 0: BM25 scores and, in practice, MiniLM cosines are >= 0);
         "tmm" (s - floor) / (max - floor), with a theoretical lower bound `floor` (e.g. -1 for cosine);
         "z"   (s - mean) / std over the top `window`.
    A chunk absent from the leg gets the lowest normalised value of the leg's list (it ranked below all
    of them), and 0 when the leg returned nothing."""
    top = _finite([c.score for c in cands[:window]])
    if not top:
        return {}, 0.0
    if how == "mm":
        lo, hi = min(top), max(top)
        f = (lambda s: (s - lo) / (hi - lo)) if hi > lo else (lambda s: 1.0)
    elif how == "max":
        hi = max(top)
        f = (lambda s: s / hi) if hi > 0 else (lambda s: 1.0)
    elif how == "tmm":
        lo, hi = float(floor or 0.0), max(top)
        f = (lambda s: (s - lo) / (hi - lo)) if hi > lo else (lambda s: 1.0)
    elif how == "z":
        mu = statistics.fmean(top)
        sd = statistics.pstdev(top) if len(top) > 1 else 0.0
        f = (lambda s: (s - mu) / sd) if sd > 0 else (lambda s: 0.0)
    else:
        raise ValueError(how)
    out = {c.cid: f(c.score) if math.isfinite(c.score) else None for c in cands}
    vals = [x for x in out.values() if x is not None]
    absent = 0.0 if absent_zero or not vals else min(vals)
    return {cid: (x if x is not None else absent) for cid, x in out.items()}, absent


def cc(alpha: float, how: str = "mm", window: int = 10**9, vfloor: float = 0.0,
       adapt: Callable[[list[Cand], list[Cand]], float] | None = None, gamma: float = 0.0,
       absent_zero: bool = False) -> Scorer:
    """Convex combination alpha * norm(bm25) + (1 - alpha) * norm(vector). With `adapt`, the query's
    alpha is sigmoid(logit(alpha) + gamma * adapt(bm, vec))."""
    def score(bm: list[Cand], vec: list[Cand]) -> dict[str, float]:
        a = alpha
        if adapt is not None and gamma and 0 < alpha < 1:
            a = 1 / (1 + math.exp(-(math.log(alpha / (1 - alpha)) + gamma * adapt(bm, vec))))
        nb, ab = normalise(bm, how, window, 0.0, absent_zero)
        nv, av = normalise(vec, how, window, vfloor, absent_zero)
        if not bm:
            a = 0.0
        if not vec:
            a = 1.0
        return {cid: a * nb.get(cid, ab) + (1 - a) * nv.get(cid, av) for cid in {**nb, **nv}}
    return score


def tmm_normalise(scores: Sequence[float], floor: float) -> tuple[list[float], float]:
    """ragbench_core::fusion::normalise: (s - floor) / (best - floor) with `best` the largest finite score;
    NaN / -inf get the lowest normalised value, +inf 1.0; no finite score above the floor: all 1.0.
    Returns the normalised scores and the value of a chunk the leg did not return (the lowest)."""
    if not scores:
        return [], 0.0
    floor = floor if math.isfinite(floor) else 0.0
    fin = _finite(scores)
    span = (max(fin) - floor) if fin else -math.inf
    if not (math.isfinite(span) and span > 0):
        return [1.0] * len(scores), 1.0
    norm = [(s - floor) / span if math.isfinite(s) else None for s in scores]
    norm = [n if n is not None and math.isfinite(n) else None for n in norm]
    ok = [n for n in norm if n is not None]
    lowest = min(ok) if ok else 0.0
    return [n if n is not None else (1.0 if s == math.inf else lowest) for n, s in zip(norm, scores)], lowest


def tmm(wb: float = 0.2, wv: float = 0.8, bfloor: float = 0.0, vfloor: float = -1.0) -> Scorer:
    """The recommended default, with the arithmetic of ragbench_core::fusion::convex (a leg with no
    candidates or a weight that is not finite and > 0 is ignored): fused = wb / (wb + wv) * n_bm25 +
    wv / (wb + wv) * n_vector over theoretically min-max-normalised scores (floors 0 and -1); a chunk a
    leg did not return gets that leg's lowest normalised value."""
    def score(bm: list[Cand], vec: list[Cand]) -> dict[str, float]:
        use_b = math.isfinite(wb) and wb > 0 and bool(bm)
        use_v = math.isfinite(wv) and wv > 0 and bool(vec)
        total = (wb if use_b else 0.0) + (wv if use_v else 0.0)
        if not (math.isfinite(total) and total > 0):
            return {}
        ab, av = (wb if use_b else 0.0) / total, (wv if use_v else 0.0) / total
        nb, lb = tmm_normalise([c.score for c in bm], bfloor)
        nv, lv = tmm_normalise([c.score for c in vec], vfloor)
        b = {c.cid: n for c, n in reversed(list(zip(bm, nb)))} if use_b else {}  # first entry wins
        v = {c.cid: n for c, n in reversed(list(zip(vec, nv)))} if use_v else {}
        return {cid: (ab * b.get(cid, lb) if use_b else 0.0) + (av * v.get(cid, lv) if use_v else 0.0)
                for cid in {**b, **v}}
    return score


def rank_chunks(scores: dict[str, float], bm: list[Cand], vec: list[Cand], chunks) -> list[str]:
    """Today's order: fused score desc, best single-leg rank, chunk index, chunk id."""
    rb = {c.cid: c.rank for c in bm}
    rv = {c.cid: c.rank for c in vec}
    return sorted(scores, key=lambda cid: (-scores[cid], min(rb.get(cid, BIG), rv.get(cid, BIG)),
                                           chunks[cid][2], cid))


def aggregate(order: list[str], scores: dict[str, float], chunks, how: str = "max", param: float = 0.0) -> list[str]:
    """Chunk ranking -> one representative chunk per document, in document order.
    max:     the document's best chunk (= eval.py's max-pooling).
    second:  best + param * second best chunk score.
    lse:     param * log(sum(exp(score / param))) over the document's chunks (soft-max; param = temperature).
    sum:     sum of the document's chunk scores."""
    if how == "max":
        return order
    pos = {cid: i for i, cid in enumerate(order)}
    by_doc: dict[str, list[float]] = {}
    best: dict[str, str] = {}
    for cid in order:
        d = chunks[cid][0]
        by_doc.setdefault(d, []).append(scores[cid])
        best.setdefault(d, cid)
    agg = {}
    for d, ss in by_doc.items():
        if how == "second":
            agg[d] = ss[0] + param * (ss[1] if len(ss) > 1 else 0.0)
        elif how == "lse":
            m = ss[0]
            agg[d] = m + param * math.log(sum(math.exp((s - m) / param) for s in ss))
        elif how == "sum":
            agg[d] = sum(ss)
        else:
            raise ValueError(how)
    return sorted(best.values(), key=lambda cid: (-agg[chunks[cid][0]], pos[cid]))


@dataclass
class Method:
    name: str
    scorer: Scorer
    agg: str = "max"
    agg_param: float = 0.0
    candidates: int = 300     # per-leg candidate list length (the leg lists are cut to this)
    k: int = 300              # chunks returned (eval.py asks hybrid_search for k = 300)

    def ranking(self, q: Query, ls: LabSet) -> list[str]:
        bm, vec = q.bm25[: self.candidates], q.vector[: self.candidates]
        scores = self.scorer(bm, vec)
        order = rank_chunks(scores, bm, vec, ls.chunks)
        return aggregate(order, scores, ls.chunks, self.agg, self.agg_param)[: self.k]


def doc_ranking(chunk_order: Sequence[str], q: Query, ls: LabSet) -> list[str]:
    return ev.document_ranking((ls.chunks[c][1] for c in chunk_order), q.qid)


def run(method: Method | str, ls: LabSet) -> list[dict[str, float]]:
    """Per-query metrics of a method ("bm25", "vector", "hybrid" = the exported rankings)."""
    out = []
    for q in ls.queries:
        if method == "bm25":
            order = [c.cid for c in q.bm25]
        elif method == "vector":
            order = [c.cid for c in q.vector]
        elif method == "hybrid":
            # today's rag.hybrid_search; for the stress sets (not exported) its exact Python replica
            order = [h[0] for h in q.hybrid] if q.hybrid else Method("rrf", rrf()).ranking(q, ls)
        else:
            order = method.ranking(q, ls)
        out.append(ev.evaluate_query(doc_ranking(order, q, ls), q.qrels))
    return out


# --------------------------------------------------------------------------------------------------
# Query-adaptive signals (computed from one query's raw leg scores; no labels)
# --------------------------------------------------------------------------------------------------


def peak(cands: list[Cand], window: int = 100) -> float:
    """How far the leg's top score stands out of its top `window`: (s1 - mean) / std."""
    top = _finite([c.score for c in cands[:window]])
    if len(top) < 2:
        return 0.0
    sd = statistics.pstdev(top)
    return (top[0] - statistics.fmean(top)) / sd if sd > 0 else 0.0


def peak_log_ratio(window: int = 100) -> Callable[[list[Cand], list[Cand]], float]:
    """log(peak(bm25) / peak(vector)): > 0 when BM25's top stands out more than the vector leg's."""
    return lambda bm, vec: math.log((peak(bm, window) + 1e-6) / (peak(vec, window) + 1e-6))


def support(depth: int = 10, deep: int = 100) -> Callable[[list[Cand], list[Cand]], float]:
    """Corroboration: share of BM25's top `depth` chunks found in the vector leg's top `deep`, minus the
    share of the vector leg's top `depth` found in BM25's top `deep` (> 0: BM25's top is the more agreed)."""
    def f(bm: list[Cand], vec: list[Cand]) -> float:
        vb = {c.cid for c in vec[:deep]}
        bb = {c.cid for c in bm[:deep]}
        sb = sum(c.cid in vb for c in bm[:depth]) / max(1, min(depth, len(bm)))
        sv = sum(c.cid in bb for c in vec[:depth]) / max(1, min(depth, len(vec)))
        return sb - sv
    return f


# --------------------------------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------------------------------

KEYS = ("ndcg@10", "recall@100", "mrr@10")


def summary(per_query: list[dict[str, float]]) -> dict[str, float]:
    return ev.mean_metrics(per_query)


def wins_losses(per_query: list[dict[str, float]], ref: list[dict[str, float]],
                key: str = "ndcg@10") -> tuple[int, int, int]:
    w = sum(a[key] > b[key] + 1e-12 for a, b in zip(per_query, ref))
    l = sum(a[key] < b[key] - 1e-12 for a, b in zip(per_query, ref))
    return w, l, len(per_query) - w - l


class Bench:
    """Per-set legs and helpers to score methods against them."""

    def __init__(self, sets: list[LabSet]):
        self.sets = sets
        self.legs = {ls.label: {m: run(m, ls) for m in ("bm25", "vector", "hybrid")} for ls in sets}

    def better_leg(self, ls: LabSet) -> str:
        L = self.legs[ls.label]
        return max(("bm25", "vector"), key=lambda m: summary(L[m])["ndcg@10"])

    def score(self, method: Method) -> dict[str, list[dict[str, float]]]:
        return {ls.label: run(method, ls) for ls in self.sets}

    def row(self, name: str, res: dict[str, list[dict[str, float]]], wl: bool = True) -> list[str]:
        cells = [name]
        nd = []
        for ls in self.sets:
            m = summary(res[ls.label])
            nd.append(m["ndcg@10"])
            cells += [f"{m['ndcg@10']:.4f}", f"{m['recall@100']:.4f}", f"{m['mrr@10']:.4f}"]
            if wl:
                w, l, t = wins_losses(res[ls.label], self.legs[ls.label][self.better_leg(ls)])
                cells.append(f"{w}/{l}")
        cells.append(f"{statistics.fmean(nd):.4f}")
        return cells

    def headers(self, wl: bool = True) -> list[str]:
        h = ["method"]
        for ls in self.sets:
            short = ls.label.replace("scifact", "sf").replace("cranfield", "cran")
            h += [f"{short} nDCG@10", "R@100", "MRR@10"] + (["W/L vs best leg"] if wl else [])
        return h + ["mean nDCG@10"]

    def table(self, rows: list[tuple[str, dict]], wl: bool = True) -> None:
        ev.print_table(self.headers(wl), [self.row(n, r, wl) for n, r in rows])

    def mean_ndcg(self, res) -> float:
        return statistics.fmean(summary(res[ls.label])["ndcg@10"] for ls in self.sets)

    def margins(self, res) -> list[float]:
        """nDCG@10 of the method minus its better leg's, per set."""
        out = []
        for ls in self.sets:
            L = self.legs[ls.label]
            best = max(summary(L["bm25"])["ndcg@10"], summary(L["vector"])["ndcg@10"])
            out.append(summary(res[ls.label])["ndcg@10"] - best)
        return out


class DocLevel(Method):
    """Fusion of document rankings: each leg first max-pooled to documents (a document's leg score and
    rank = its best chunk's, ranks renumbered over documents), then fused."""

    def ranking(self, q: Query, ls: LabSet) -> list[str]:
        rep: dict[str, str] = {}

        def dedup(cands: list[Cand]) -> list[Cand]:
            seen: set[str] = set()
            out: list[Cand] = []
            for c in cands:
                d = ls.chunks[c.cid][0]
                if d not in seen:
                    seen.add(d)
                    out.append(Cand(rep.setdefault(d, c.cid), c.score, len(out) + 1))
            return out

        bm, vec = dedup(q.bm25[: self.candidates]), dedup(q.vector[: self.candidates])
        scores = self.scorer(bm, vec)
        return rank_chunks(scores, bm, vec, ls.chunks)[: self.k]


# --------------------------------------------------------------------------------------------------
# The experiments
# --------------------------------------------------------------------------------------------------

RECOMMENDED = ("convex tmm bm25 0.2 / vector 0.8", lambda: Method("convex", tmm(0.2, 0.8)))


def curve(B: Bench, label: str, make: Callable[[float], Method], values: Sequence[float]) -> list[tuple[float, dict]]:
    """One line per parameter sweep: value: mean nDCG@10 (margin over the better leg per set)."""
    out, cells = [], []
    for x in values:
        r = B.score(make(x))
        out.append((x, r))
        cells.append(f"{x:g}: {B.mean_ndcg(r):.4f} (" + ", ".join(f"{m:+.3f}" for m in B.margins(r)) + ")")
    print(f"  {label}")
    for i in range(0, len(cells), 4):
        print("      " + "   ".join(cells[i:i + 4]))
    return out


def check_replica(sets: list[LabSet]) -> None:
    print("Python RRF (1, 1, 60) against the exported rag.hybrid_search rankings (first 300 chunks):")
    for ls in sets:
        if ls.queries and ls.queries[0].hybrid:
            m = Method("rrf", rrf())
            same = sum(m.ranking(q, ls) == [h[0] for h in q.hybrid] for q in ls.queries)
            ranks = sum(all(h[2] == {c.cid: c.rank for c in q.bm25}.get(h[0]) and
                            h[3] == {c.cid: c.rank for c in q.vector}.get(h[0]) for h in q.hybrid)
                        for q in ls.queries)
            n = len(ls.queries)
            print(f"  {ls.label}: identical rankings {same}/{n}, identical leg ranks {ranks}/{n}")


def tune(lab: str) -> None:
    t0 = time.perf_counter()
    sets = [load(lab, n, s) for n, s in TUNING_SETS]
    check_replica(sets)
    B = Bench(sets)
    print()
    print("Tuning sets: SciFact train (809 queries) and Cranfield test (225). 'a' = BM25's share of the")
    print("weight; each cell: mean nDCG@10 of the two sets (nDCG@10 minus the better leg's, per set).")
    print()
    print("RRF, vector weight 1:")
    for wb in (0.6, 0.8, 1.0, 1.25, 1.5):
        curve(B, f"bm25_weight {wb}, k =", lambda k: Method("", rrf(wb, 1.0, k)), [2, 5, 10, 20, 40, 60, 100, 200])
    print()
    print("Convex combination a * n(bm25) + (1 - a) * n(vector), by normalisation (absent = leg's lowest):")
    A = [0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.7]
    fams = [("min-max over the leg's 300", "mm", 300, 0.0), ("min-max over the top 100", "mm", 100, 0.0),
            ("min-max over the top 20", "mm", 20, 0.0), ("s / max (floor 0 for both)", "max", 300, 0.0),
            ("theoretical min-max, floors 0 / -1", "tmm", 300, -1.0),
            ("theoretical min-max, floors 0 / -0.5", "tmm", 300, -0.5),
            ("z-score over the leg's 300", "z", 300, 0.0), ("z-score over the top 100", "z", 100, 0.0),
            ("z-score over the top 50", "z", 50, 0.0), ("z-score over the top 20", "z", 20, 0.0)]
    for label, how, w, vf in fams:
        curve(B, label, lambda a: Method("", cc(a, how, w, vf)), A)
    print()
    print("Candidates per leg 100 (the function's default for k <= 100) instead of 300:")
    curve(B, "theoretical min-max 0 / -1, c=100", lambda a: Method("", cc(a, "tmm", 300, -1.0), candidates=100),
          [0.1, 0.15, 0.2, 0.25, 0.3])
    curve(B, "s / max, c=100", lambda a: Method("", cc(a, "max", 300), candidates=100), [0.3, 0.35, 0.4, 0.45, 0.5])
    curve(B, "min-max, c=100", lambda a: Method("", cc(a, "mm", 300), candidates=100), [0.4, 0.45, 0.5, 0.55, 0.6])
    curve(B, "z-score, c=100", lambda a: Method("", cc(a, "z", 300), candidates=100), [0.4, 0.45, 0.5, 0.55, 0.6])
    curve(B, "RRF k=60, c=100 (a = bm25_weight, vector 1 - a)", lambda a: Method("", rrf(a, 1 - a, 60), candidates=100),
          [0.4, 0.5, 0.6])
    print()
    print("Fine sweep of the recommended family (theoretical min-max, floors 0 / -1), candidates 300:")
    curve(B, "a =", lambda a: Method("", tmm(a, 1 - a)), [0.125, 0.15, 0.175, 0.2, 0.225, 0.25, 0.275])
    print()
    print("Query-adaptive weight on top of it: a_q = sigmoid(logit(0.2) + gamma * signal):")
    curve(B, "signal = log(peak(bm25) / peak(vector)), peak = z of the top score in the top 10",
          lambda g: Method("", cc(0.2, "tmm", 10**9, -1.0, peak_log_ratio(10), g)), [-1, -0.5, 0.5, 1, 2])
    curve(B, "signal = log(peak ratio), peak over the top 100",
          lambda g: Method("", cc(0.2, "tmm", 10**9, -1.0, peak_log_ratio(100), g)), [-1, -0.5, 0.5, 1, 2])
    curve(B, "signal = leg agreement: share of BM25's top 10 in vector's top 100 minus the converse",
          lambda g: Method("", cc(0.2, "tmm", 10**9, -1.0, support(10, 100), g)), [-2, -1, 1, 2, 4])
    print()
    print("Chunks -> document (default: the document's best chunk = max-pooling):")
    curve(B, "tmm 0.2, soft-max (log-sum-exp), temperature =",
          lambda t: Method("", tmm(), agg="lse", agg_param=t), [0.01, 0.02, 0.05, 0.1])
    curve(B, "tmm 0.2, best + beta * second best chunk, beta =",
          lambda b: Method("", tmm(), agg="second", agg_param=b), [0.05, 0.1, 0.2, 0.5])
    curve(B, "tmm 0.2, sum of the chunks", lambda _: Method("", tmm(), agg="sum"), [1])
    curve(B, "RRF 60, best + beta * second best chunk, beta =",
          lambda b: Method("", rrf(), agg="second", agg_param=b), [0.1, 0.2, 0.5])
    curve(B, "document-level fusion (legs max-pooled to documents first), RRF k =",
          lambda k: DocLevel("", rrf(1, 1, k)), [10, 20, 60])
    curve(B, "document-level fusion, tmm a =", lambda a: DocLevel("", tmm(a, 1 - a)), [0.15, 0.2, 0.25])
    print()
    stress = [load(lab, n, s, v) for n, s, v in STRESS_SETS]
    S = Bench(stress)
    print("Stress sets (SciFact train with one leg searching every second word of the query): the")
    print("better-leg margin when the other leg is much weaker:")
    S.table([(m, {ls.label: S.legs[ls.label][m] for ls in stress}) for m in ("bm25", "vector", "hybrid")]
            + [(n, S.score(m)) for n, m in [
                ("rrf bm25_w 1 k 40", Method("", rrf(1, 1, 40))),
                ("rrf bm25_w 0.6 k 60", Method("", rrf(0.6, 1, 60))),
                ("convex min-max a 0.5", Method("", cc(0.5, "mm"))),
                ("convex z-score a 0.5", Method("", cc(0.5, "z"))),
                ("convex s/max a 0.4", Method("", cc(0.4, "max"))),
                (RECOMMENDED[0], RECOMMENDED[1]())]])
    curve(S, "theoretical min-max 0 / -1, a =", lambda a: Method("", tmm(a, 1 - a)),
          [0.1, 0.15, 0.175, 0.2, 0.225, 0.25, 0.3])
    curve(S, "s / max, a =", lambda a: Method("", cc(a, "max")), [0.3, 0.35, 0.4, 0.45, 0.5])
    print()
    print("Summary on the tuning sets:")
    B.table([(m, {ls.label: B.legs[ls.label][m] for ls in sets}) for m in ("bm25", "vector")]
            + [(n, B.score(m())) for n, m in FINAL])
    print(f"\n({time.perf_counter() - t0:.0f} s)")


# The methods evaluated once on SciFact test, each with what it was tuned on.
FINAL = [
    ("today: rrf 1 / 1, k 60 (untuned)", lambda: Method("", rrf(1, 1, 60))),
    ("rrf 1 / 1, k 40 (k tuned)", lambda: Method("", rrf(1, 1, 40))),
    ("convex min-max a 0.5", lambda: Method("", cc(0.5, "mm"))),
    ("convex z-score a 0.5", lambda: Method("", cc(0.5, "z"))),
    ("convex s/max a 0.4", lambda: Method("", cc(0.4, "max"))),
    RECOMMENDED,
    (RECOMMENDED[0] + ", c=100", lambda: Method("convex", tmm(0.2, 0.8), candidates=100)),
]


def final(lab: str) -> None:
    sets = [load(lab, n, s) for n, s in SETS]
    check_replica(sets)
    B = Bench(sets)
    print()
    rows = [(m, {ls.label: B.legs[ls.label][m] for ls in sets}) for m in ("bm25", "vector", "hybrid")]
    rows += [(n, B.score(m())) for n, m in FINAL]
    B.table(rows)
    print("('hybrid' is the exported rag.hybrid_search ranking; 'mean nDCG@10' is over all three sets.)")
    print()
    print("Per-query nDCG@10 of each hybrid against the set's better leg (wins / losses / ties):")
    ev.print_table(["method"] + [ls.label + f" vs {B.better_leg(ls)}" for ls in sets],
                   [[n] + ["%d / %d / %d" % wins_losses(r[ls.label], B.legs[ls.label][B.better_leg(ls)]) for ls in sets]
                    for n, r in rows[2:]])
    rec = dict(rows)[RECOMMENDED[0]]
    today = dict(rows)["hybrid"]
    print()
    print(f"{RECOMMENDED[0]} against today's hybrid, per query (wins / losses / ties):")
    for ls in sets:
        d = [a["ndcg@10"] - b["ndcg@10"] for a, b in zip(rec[ls.label], today[ls.label])]
        lo, hi = bootstrap_ci(d)
        print(f"  {ls.label}: nDCG@10 %d / %d / %d" % wins_losses(rec[ls.label], today[ls.label])
              + f"; mean difference {statistics.fmean(d):+.4f} (paired bootstrap 95% CI {lo:+.4f} .. {hi:+.4f})")


def bootstrap_ci(d: list[float], n: int = 2000, seed: int = 14) -> tuple[float, float]:
    """95% interval of the mean of `d` over `n` resamples of the queries (fixed seed)."""
    import random
    rnd = random.Random(seed)
    means = sorted(statistics.fmean(rnd.choices(d, k=len(d))) for _ in range(n))
    return means[int(0.025 * n)], means[int(0.975 * n) - 1]


# --------------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------------


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("export", help="store each leg's candidates (needs the database)")
    e.add_argument("url")
    e.add_argument("--out", default=str(_HERE.parent / ".stack" / "fusion-lab"))
    e.add_argument("--depth", type=int, default=300)
    e.add_argument("--datasets", default=str(_HERE.parent.parent / "shared" / "datasets"))
    e.add_argument("--stress", action="store_true", help="export STRESS_SETS instead of SETS")
    for name in ("tune", "final"):
        s = sub.add_parser(name)
        s.add_argument("--lab", default=str(_HERE.parent / ".stack" / "fusion-lab"))
    args = p.parse_args(argv)
    if args.cmd == "export":
        export(args.url, args.out, args.depth, args.datasets, args.stress)
    elif args.cmd == "tune":
        tune(args.lab)
    else:
        final(args.lab)
    return 0


if __name__ == "__main__":
    sys.exit(main())
