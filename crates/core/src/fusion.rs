//! Fusion of hybrid search's two legs (BM25 and vector) into one chunk ranking — pure functions, no
//! Postgres.
//!
//! Input: each leg's candidate list for one query: chunk id, document id, chunk index, the leg's score
//! (BM25 score; cosine similarity = 1 - cosine distance) and the leg's rank (1-based). Output: the union
//! of the candidates, each with its fused score and both per-leg ranks (`None` where a leg did not
//! return the chunk), best first. The caller cuts it to `k`.
//!
//! Two methods:
//! - [`rrf`]: weighted Reciprocal Rank Fusion, exactly today's SQL: `w_bm25 / (k + rank_bm25) +
//!   w_vector / (k + rank_vector)`, a leg that did not return the chunk adds nothing. Needs ranks only.
//! - [`convex`] (the default, issue #14): a convex combination of the legs' scores after theoretical
//!   min-max normalisation (Bruch et al. 2023, "An Analysis of Fusion Functions for Hybrid Retrieval"):
//!   each leg's score becomes `(score - floor) / (best - floor)`, where `best` is the leg's best score
//!   for this query and `floor` the score's theoretical minimum (0 for BM25, -1 for cosine similarity);
//!   a chunk a leg did not return gets that leg's lowest normalised value; then
//!   `fused = w_bm25 / (w_bm25 + w_vector) * n_bm25 + w_vector / (w_bm25 + w_vector) * n_vector`.
//!   Defaults (`Convex::default()`): weights 0.2 / 0.8, floors 0 / -1 — the weight tuned on SciFact's
//!   train split and Cranfield, see `scripts/fusion_lab.py`. Needs the raw scores.
//!
//! Order of the output (both methods): fused score descending, then the best single-leg rank, then the
//! chunk index (earlier in its document first), then the chunk id — today's tie rules.
//!
//! Robustness: a leg whose weight is 0, negative or not finite is ignored entirely, as if it had
//! returned nothing (today's SQL does not run it); both ignored gives an empty result. A chunk listed
//! twice in one leg keeps its best rank (and that entry's score). A rank of 0 counts as 1. NaN and
//! infinite scores never panic and never reach the fused score (see [`normalise`]). Nothing unwraps.

use std::cmp::Ordering;
use std::collections::BTreeMap;

/// One candidate of one leg.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate<I> {
    /// Chunk id.
    pub id: I,
    /// Id of the chunk's document.
    pub document: I,
    /// Position of the chunk in its document (a tie-breaker: earlier first).
    pub chunk_index: i32,
    /// The leg's score: BM25 score, or cosine similarity (`1 - cosine distance`). [`rrf`] ignores it.
    pub score: f64,
    /// 1-based rank within the leg (best = 1).
    pub rank: u32,
}

/// One chunk of the fused ranking.
#[derive(Clone, Debug, PartialEq)]
pub struct Fused<I> {
    pub id: I,
    pub document: I,
    pub chunk_index: i32,
    /// The fused score (always finite).
    pub score: f64,
    pub bm25_rank: Option<u32>,
    pub vector_rank: Option<u32>,
}

/// Parameters of [`rrf`]. `Default`: weights 1 and 1, k 60 (today's defaults).
#[derive(Clone, Debug, PartialEq)]
pub struct Rrf {
    pub bm25_weight: f64,
    pub vector_weight: f64,
    /// The rank offset (RRF's `k`); negative or not finite counts as 0.
    pub k: f64,
}

impl Default for Rrf {
    fn default() -> Self {
        Rrf { bm25_weight: 1.0, vector_weight: 1.0, k: 60.0 }
    }
}

/// Parameters of [`convex`]. Only the ratio of the weights matters. `Default`: weights 0.2 / 0.8 (tuned
/// on SciFact train and Cranfield: flat within 0.002 nDCG@10 for a BM25 share of 0.15-0.25), floors
/// 0 (BM25 scores are >= 0) and -1 (cosine similarity's minimum) — properties of the scores, not tuned.
#[derive(Clone, Debug, PartialEq)]
pub struct Convex {
    pub bm25_weight: f64,
    pub vector_weight: f64,
    pub bm25_floor: f64,
    pub vector_floor: f64,
}

impl Default for Convex {
    fn default() -> Self {
        Convex { bm25_weight: 0.2, vector_weight: 0.8, bm25_floor: 0.0, vector_floor: -1.0 }
    }
}

/// A fusion method with its parameters. `Default`: [`Convex::default`].
#[derive(Clone, Debug, PartialEq)]
pub enum Fusion {
    Rrf(Rrf),
    Convex(Convex),
}

impl Default for Fusion {
    fn default() -> Self {
        Fusion::Convex(Convex::default())
    }
}

/// Fuse with the given method.
pub fn fuse<I: Ord + Clone>(bm25: &[Candidate<I>], vector: &[Candidate<I>], method: &Fusion) -> Vec<Fused<I>> {
    match method {
        Fusion::Rrf(p) => rrf(bm25, vector, p),
        Fusion::Convex(p) => convex(bm25, vector, p),
    }
}

/// A usable weight: finite and > 0; anything else switches the leg off.
fn weight(w: f64) -> Option<f64> {
    (w.is_finite() && w > 0.0).then_some(w)
}

/// The leg's candidates by chunk id, each id once: the entry with the best rank (first in the list on
/// equal ranks). Ranks of 0 count as 1. The value is the entry's index in `leg`.
fn by_id<I: Ord + Clone>(leg: &[Candidate<I>]) -> BTreeMap<I, usize> {
    let mut map: BTreeMap<I, usize> = BTreeMap::new();
    for (i, c) in leg.iter().enumerate() {
        match map.get(&c.id) {
            Some(&j) if leg[j].rank.max(1) <= c.rank.max(1) => {}
            _ => {
                map.insert(c.id.clone(), i);
            }
        }
    }
    map
}

/// Union of the two legs (an ignored leg contributes nothing), the fused score from `score(b, v)` with
/// each leg's entry index, sorted by the tie rules.
fn combine<I: Ord + Clone>(
    bm25: Option<&[Candidate<I>]>,
    vector: Option<&[Candidate<I>]>,
    score: impl Fn(Option<usize>, Option<usize>) -> f64,
) -> Vec<Fused<I>> {
    let b = bm25.map(by_id).unwrap_or_default();
    let v = vector.map(by_id).unwrap_or_default();
    let mut out = Vec::with_capacity(b.len() + v.len());
    let mut push = |id: &I, bi: Option<usize>, vi: Option<usize>| {
        let bc = bi.and_then(|i| bm25.and_then(|l| l.get(i)));
        let vc = vi.and_then(|i| vector.and_then(|l| l.get(i)));
        // The chunk's own columns: from BM25's entry when both legs have it.
        let Some(c) = bc.or(vc) else { return };
        let s = score(bi, vi);
        out.push(Fused {
            id: id.clone(),
            document: c.document.clone(),
            chunk_index: c.chunk_index,
            // Finite inputs give finite scores; an overflow still sorts, on the side it went to.
            score: if s.is_finite() { s } else if s > 0.0 { f64::MAX } else { f64::MIN },
            bm25_rank: bc.map(|c| c.rank.max(1)),
            vector_rank: vc.map(|c| c.rank.max(1)),
        });
    };
    for (id, &bi) in &b {
        push(id, Some(bi), v.get(id).copied());
    }
    for (id, &vi) in &v {
        if !b.contains_key(id) {
            push(id, None, Some(vi));
        }
    }
    out.sort_by(order);
    out
}

/// Today's order: fused score descending, best single-leg rank, chunk index, chunk id.
fn order<I: Ord>(x: &Fused<I>, y: &Fused<I>) -> Ordering {
    let best = |f: &Fused<I>| f.bm25_rank.unwrap_or(u32::MAX).min(f.vector_rank.unwrap_or(u32::MAX));
    y.score
        .total_cmp(&x.score)
        .then_with(|| best(x).cmp(&best(y)))
        .then_with(|| x.chunk_index.cmp(&y.chunk_index))
        .then_with(|| x.id.cmp(&y.id))
}

/// Weighted Reciprocal Rank Fusion, today's formula: `bm25_weight / (k + bm25_rank) + vector_weight /
/// (k + vector_rank)`; a leg that did not return the chunk adds nothing (the same float operations, in
/// the same order, as the SQL). Scores are ignored.
pub fn rrf<I: Ord + Clone>(bm25: &[Candidate<I>], vector: &[Candidate<I>], p: &Rrf) -> Vec<Fused<I>> {
    let k = if p.k.is_finite() && p.k > 0.0 { p.k } else { 0.0 };
    let (wb, wv) = (weight(p.bm25_weight), weight(p.vector_weight));
    let term = |w: Option<f64>, leg: &[Candidate<I>], i: Option<usize>| match (w, i.and_then(|i| leg.get(i))) {
        (Some(w), Some(c)) => w / (k + f64::from(c.rank.max(1))),
        _ => 0.0,
    };
    combine(wb.map(|_| bm25), wv.map(|_| vector), |bi, vi| term(wb, bm25, bi) + term(wv, vector, vi))
}

/// Theoretical min-max normalisation of one leg's scores: `(score - floor) / (best - floor)`, `best` the
/// largest finite score. Returns the normalised scores (same order as `scores`) and the value of a chunk
/// the leg did not return: the lowest normalised value (0.0 for an empty list).
///
/// Edge cases: NaN and -inf get the lowest normalised value, +inf gets 1.0 (as good as the best); when
/// no finite score lies above `floor` (all at the floor, or none finite) the leg carries no information
/// and every score, and the absent value, is 1.0. A non-finite `floor` counts as 0.
pub fn normalise(scores: &[f64], floor: f64) -> (Vec<f64>, f64) {
    if scores.is_empty() {
        return (Vec::new(), 0.0);
    }
    let floor = if floor.is_finite() { floor } else { 0.0 };
    let best = scores.iter().copied().filter(|s| s.is_finite()).fold(f64::NEG_INFINITY, f64::max);
    let span = best - floor;
    if !(span.is_finite() && span > 0.0) {
        return (vec![1.0; scores.len()], 1.0);
    }
    // None: not finite, or so far below the floor that the quotient overflows.
    let norm = |s: f64| Some((s - floor) / span).filter(|n| s.is_finite() && n.is_finite());
    let lowest = scores.iter().filter_map(|&s| norm(s)).fold(f64::INFINITY, f64::min);
    let lowest = if lowest.is_finite() { lowest } else { 0.0 };
    let out = scores
        .iter()
        .map(|&s| match norm(s) {
            Some(n) => n,
            None if s == f64::INFINITY => 1.0,
            None => lowest,
        })
        .collect();
    (out, lowest)
}

/// Convex combination of theoretically min-max-normalised scores (see the module documentation).
/// A leg that returned nothing is treated like a switched-off leg: the other leg's weight becomes 1.
pub fn convex<I: Ord + Clone>(bm25: &[Candidate<I>], vector: &[Candidate<I>], p: &Convex) -> Vec<Fused<I>> {
    let wb = weight(p.bm25_weight).filter(|_| !bm25.is_empty());
    let wv = weight(p.vector_weight).filter(|_| !vector.is_empty());
    let total = wb.unwrap_or(0.0) + wv.unwrap_or(0.0);
    if !(total.is_finite() && total > 0.0) {
        return Vec::new();
    }
    let (ab, av) = (wb.unwrap_or(0.0) / total, wv.unwrap_or(0.0) / total);
    let scores = |leg: &[Candidate<I>]| leg.iter().map(|c| c.score).collect::<Vec<f64>>();
    let (nb, absent_b) = normalise(&scores(bm25), p.bm25_floor);
    let (nv, absent_v) = normalise(&scores(vector), p.vector_floor);
    let part = |n: &[f64], absent: f64, i: Option<usize>| i.and_then(|i| n.get(i).copied()).unwrap_or(absent);
    combine(wb.map(|_| bm25), wv.map(|_| vector), |bi, vi| {
        let b = if wb.is_some() { ab * part(&nb, absent_b, bi) } else { 0.0 };
        let v = if wv.is_some() { av * part(&nv, absent_v, vi) } else { 0.0 };
        b + v
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A candidate with chunk id `id`, document `doc`, chunk index `idx`, score and rank.
    fn c(id: u8, doc: u8, idx: i32, score: f64, rank: u32) -> Candidate<[u8; 16]> {
        let mut i = [0u8; 16];
        i[15] = id;
        let mut d = [0u8; 16];
        d[0] = doc;
        Candidate { id: i, document: d, chunk_index: idx, score, rank }
    }

    /// A leg from (id, score) pairs, best first: ranks 1, 2, ...; document = id, chunk index 0.
    fn leg(items: &[(u8, f64)]) -> Vec<Candidate<[u8; 16]>> {
        items.iter().enumerate().map(|(r, &(id, s))| c(id, id, 0, s, r as u32 + 1)).collect()
    }

    fn ids(out: &[Fused<[u8; 16]>]) -> Vec<u8> {
        out.iter().map(|f| f.id[15]).collect()
    }

    fn get(out: &[Fused<[u8; 16]>], id: u8) -> &Fused<[u8; 16]> {
        out.iter().find(|f| f.id[15] == id).expect("chunk in the output")
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    // ---- rrf ------------------------------------------------------------------------------------

    #[test]
    fn rrf_is_todays_formula() {
        // A: 1/61 + 1/62, C: 1/63 + 1/61, B: 1/62, D: 1/63 -> A, C, B, D.
        let b = leg(&[(1, 9.0), (2, 8.0), (3, 7.0)]);
        let v = leg(&[(3, 0.9), (1, 0.8), (4, 0.7)]);
        let out = rrf(&b, &v, &Rrf::default());
        assert_eq!(ids(&out), vec![1, 3, 2, 4]);
        // bit-identical to the SQL's coalesce(w / (k + r), 0) + coalesce(w / (k + r), 0)
        assert_eq!(get(&out, 1).score, 1.0 / (60.0 + 1.0) + 1.0 / (60.0 + 2.0));
        assert_eq!(get(&out, 2).score, 0.0 + 1.0 / (60.0 + 2.0));
        assert_eq!(get(&out, 4).score, 1.0 / (60.0 + 3.0));
        assert_eq!((get(&out, 3).bm25_rank, get(&out, 3).vector_rank), (Some(3), Some(1)));
        assert_eq!((get(&out, 2).bm25_rank, get(&out, 2).vector_rank), (Some(2), None));
        assert_eq!((get(&out, 4).bm25_rank, get(&out, 4).vector_rank), (None, Some(3)));
    }

    #[test]
    fn rrf_weights_and_k() {
        // bm25 [A, B], vector [B, A]: equal weights tie; bm25_weight 2 puts A (2/61 + 1/62) first;
        // vector_weight 2 puts B first.
        let b = leg(&[(1, 2.0), (2, 1.0)]);
        let v = leg(&[(2, 0.9), (1, 0.8)]);
        let w = |bw, vw| ids(&rrf(&b, &v, &Rrf { bm25_weight: bw, vector_weight: vw, k: 60.0 }));
        assert_eq!(w(2.0, 1.0), vec![1, 2]);
        assert_eq!(w(1.0, 2.0), vec![2, 1]);
        // k = 0: bm25 [A, B, C], vector [C]: A = 1/1, C = 1/3 + 1/1 -> C, A, B.
        let b = leg(&[(1, 3.0), (2, 2.0), (3, 1.0)]);
        let v = leg(&[(3, 0.5)]);
        let out = rrf(&b, &v, &Rrf { k: 0.0, ..Rrf::default() });
        assert_eq!(ids(&out), vec![3, 1, 2]);
        assert_eq!(get(&out, 3).score, 1.0 / 3.0 + 1.0);
    }

    #[test]
    fn rrf_ties_best_leg_rank_then_chunk_index_then_id() {
        // A and B: 1/61 + 1/62 each, best single-leg rank 1 each -> chunk index decides (B is chunk 0).
        let b = vec![c(1, 1, 5, 2.0, 1), c(2, 2, 0, 1.0, 2)];
        let v = vec![c(2, 2, 0, 0.9, 1), c(1, 1, 5, 0.8, 2)];
        assert_eq!(ids(&rrf(&b, &v, &Rrf::default())), vec![2, 1]);
        // Same chunk index: the smaller id first.
        let b = vec![c(7, 7, 0, 2.0, 1), c(3, 3, 0, 1.0, 2)];
        let v = vec![c(3, 3, 0, 0.9, 1), c(7, 7, 0, 0.8, 2)];
        assert_eq!(ids(&rrf(&b, &v, &Rrf::default())), vec![3, 7]);
        // Unequal weights, k = 0: 9: 1/1 = 1; 8: 1/2 + 0.5/2 = 0.75; 5: 0.5/1 = 0.5.
        let b = vec![c(9, 9, 0, 2.0, 1), c(8, 8, 0, 1.0, 2)];
        let v = vec![c(5, 5, 0, 0.9, 1), c(8, 8, 0, 0.8, 2)];
        let out = rrf(&b, &v, &Rrf { bm25_weight: 1.0, vector_weight: 0.5, k: 0.0 });
        assert_eq!(ids(&out), vec![9, 8, 5]);
        // Equal score, different best rank, k = 0: 8 = 1/2 + 1/2 (best rank 2), 9 = 1/1 (best rank 1).
        let b = vec![c(8, 8, 0, 2.0, 2), c(9, 9, 9, 1.0, 1)];
        let v = vec![c(8, 8, 0, 0.9, 2)];
        let out = rrf(&b, &v, &Rrf { k: 0.0, ..Rrf::default() });
        assert_eq!(get(&out, 8).score, get(&out, 9).score);
        assert_eq!(ids(&out), vec![9, 8]); // best rank 1 beats best rank 2, despite chunk index 9
    }

    #[test]
    fn rrf_one_leg_empty_and_zero_weights() {
        let b = leg(&[(1, 2.0), (2, 1.0)]);
        let out = rrf(&b, &[], &Rrf::default());
        assert_eq!(ids(&out), vec![1, 2]);
        assert!(out.iter().all(|f| f.vector_rank.is_none()));
        assert!(rrf::<[u8; 16]>(&[], &[], &Rrf::default()).is_empty());
        // A zero (or negative, NaN, infinite) weight switches the leg off: its chunks are not in the
        // result and no rank of it is shown, as when the SQL does not run that leg.
        let v = leg(&[(3, 0.9), (1, 0.8)]);
        for w in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let out = rrf(&b, &v, &Rrf { bm25_weight: w, ..Rrf::default() });
            assert_eq!(ids(&out), vec![3, 1]);
            assert!(out.iter().all(|f| f.bm25_rank.is_none()));
        }
        assert!(rrf(&b, &v, &Rrf { bm25_weight: 0.0, vector_weight: 0.0, k: 60.0 }).is_empty());
    }

    #[test]
    fn rrf_odd_input_does_not_panic() {
        // rank 0 counts as 1; NaN and infinite k count as 0; duplicates keep their best rank.
        let b = vec![c(1, 1, 0, f64::NAN, 0), c(2, 2, 0, f64::INFINITY, 2), c(1, 1, 0, 1.0, 3)];
        for k in [f64::NAN, f64::INFINITY, -5.0, 0.0] {
            let out = rrf(&b, &[], &Rrf { k, ..Rrf::default() });
            assert_eq!(ids(&out), vec![1, 2]);
            assert_eq!(get(&out, 1).score, 1.0);
            assert_eq!(get(&out, 1).bm25_rank, Some(1));
            assert!(out.iter().all(|f| f.score.is_finite()));
        }
    }

    // ---- normalise ----------------------------------------------------------------------------

    #[test]
    fn normalise_is_theoretical_min_max() {
        let (n, absent) = normalise(&[10.0, 5.0, 2.0], 0.0);
        assert_eq!(n, vec![1.0, 0.5, 0.2]);
        assert_eq!(absent, 0.2);
        // cosine with floor -1: (s + 1) / (best + 1)
        let (n, absent) = normalise(&[0.5, 0.2, -0.1], -1.0);
        assert!(close(n[0], 1.0) && close(n[1], 1.2 / 1.5) && close(n[2], 0.9 / 1.5));
        assert!(close(absent, 0.9 / 1.5));
        assert_eq!(normalise(&[], 0.0), (vec![], 0.0));
    }

    #[test]
    fn normalise_degenerate_and_non_finite() {
        // All equal above the floor: all 1 (no division by zero).
        assert_eq!(normalise(&[3.0, 3.0, 3.0], 0.0), (vec![1.0, 1.0, 1.0], 1.0));
        // Best at (or below) the floor: no information, all 1.
        assert_eq!(normalise(&[0.0, 0.0], 0.0), (vec![1.0, 1.0], 1.0));
        assert_eq!(normalise(&[-2.0, -3.0], 0.0), (vec![1.0, 1.0], 1.0));
        // NaN and -inf: the lowest normalised value; +inf: 1.0.
        let (n, absent) = normalise(&[f64::NAN, f64::INFINITY, 4.0, 2.0, f64::NEG_INFINITY], 0.0);
        assert_eq!(n, vec![0.5, 1.0, 1.0, 0.5, 0.5]);
        assert_eq!(absent, 0.5);
        // Nothing finite: all 1.
        assert_eq!(normalise(&[f64::NAN, f64::INFINITY], 0.0), (vec![1.0, 1.0], 1.0));
        // A non-finite floor counts as 0; extreme values stay finite.
        assert_eq!(normalise(&[4.0, 2.0], f64::NAN).0, vec![1.0, 0.5]);
        let (n, absent) = normalise(&[f64::MAX, -f64::MAX], 0.0);
        assert!(n.iter().all(|x| x.is_finite()) && absent.is_finite());
    }

    // ---- convex -------------------------------------------------------------------------------

    #[test]
    fn convex_is_the_formula() {
        // bm25 A 10, B 5, C 0 -> 1, 0.5, 0 (absent: 0); vector C 0.5, A 0.0 (floor -1) -> 1, 2/3
        // (absent: 2/3). Weights 1:1 -> A = .5 + 1/3, B = .25 + 1/3, C = 0 + .5 -> A, B, C.
        let b = leg(&[(1, 10.0), (2, 5.0), (3, 0.0)]);
        let v = leg(&[(3, 0.5), (1, 0.0)]);
        let p = Convex { bm25_weight: 1.0, vector_weight: 1.0, ..Convex::default() };
        let out = convex(&b, &v, &p);
        assert_eq!(ids(&out), vec![1, 2, 3]);
        assert!(close(get(&out, 1).score, 0.5 * 1.0 + 0.5 * (1.0 / 1.5)));
        assert!(close(get(&out, 2).score, 0.5 * 0.5 + 0.5 * (1.0 / 1.5)));
        assert!(close(get(&out, 3).score, 0.5 * 0.0 + 0.5 * 1.0));
        assert_eq!((get(&out, 2).bm25_rank, get(&out, 2).vector_rank), (Some(2), None));
        // The default weights 0.2 / 0.8: A = .2 + .8 * 2/3 = .733, B = .1 + .533 = .633, C = .8 -> C, A, B.
        let out = convex(&b, &v, &Convex::default());
        assert_eq!(ids(&out), vec![3, 1, 2]);
        assert!(close(get(&out, 3).score, 0.8));
        // Only the ratio of the weights matters.
        let scaled = convex(&b, &v, &Convex { bm25_weight: 2.0, vector_weight: 8.0, ..Convex::default() });
        assert_eq!(ids(&scaled), ids(&out));
        assert!(scaled.iter().zip(&out).all(|(x, y)| close(x.score, y.score)));
    }

    #[test]
    fn convex_floor_changes_the_vector_spread() {
        // bm25 A 4, B 2 -> 1, .5; vector B .4, A .2. Floor 0: B .4/.4 = 1, A .5;
        // A = .5 * 1 + .5 * .5 = .75 = B -> tie (best rank 1 each, chunk index 0 each) -> smaller id A.
        // Floor -1: A's vector part = 1.2 / 1.4 -> A = .5 + .4286 > B = .25 + .5.
        let b = leg(&[(1, 4.0), (2, 2.0)]);
        let v = leg(&[(2, 0.4), (1, 0.2)]);
        let eq = Convex { bm25_weight: 1.0, vector_weight: 1.0, bm25_floor: 0.0, vector_floor: 0.0 };
        let out = convex(&b, &v, &eq);
        assert_eq!(get(&out, 1).score, get(&out, 2).score);
        assert_eq!(ids(&out), vec![1, 2]);
        let out = convex(&b, &v, &Convex { vector_floor: -1.0, ..eq });
        assert_eq!(ids(&out), vec![1, 2]);
        assert!(get(&out, 1).score > get(&out, 2).score);
    }

    #[test]
    fn convex_ties_follow_todays_rules() {
        // All scores equal in both legs: every chunk 1.0 -> best single-leg rank, then chunk index, then id.
        let b = vec![c(5, 5, 0, 1.0, 1), c(4, 4, 3, 1.0, 2), c(6, 6, 1, 1.0, 3)];
        let v = vec![c(6, 6, 1, 0.3, 1), c(4, 4, 3, 0.3, 2), c(7, 7, 1, 0.3, 3)];
        let out = convex(&b, &v, &Convex::default());
        assert!(out.iter().all(|f| close(f.score, 1.0)));
        // best ranks: 5 -> 1, 6 -> 1, 4 -> 2, 7 -> 3; 5 and 6 tie on rank 1 -> chunk index 0 < 1.
        assert_eq!(ids(&out), vec![5, 6, 4, 7]);
    }

    #[test]
    fn convex_one_leg_empty_or_switched_off() {
        // Vector leg empty: the BM25 leg alone, weight 1 -> the normalised BM25 scores.
        let b = leg(&[(1, 8.0), (2, 2.0)]);
        let out = convex(&b, &[], &Convex::default());
        assert_eq!(ids(&out), vec![1, 2]);
        assert_eq!((get(&out, 1).score, get(&out, 2).score), (1.0, 0.25));
        assert!(out.iter().all(|f| f.vector_rank.is_none()));
        // Zero / negative / NaN weight: the leg is ignored, even if it returned chunks.
        let v = leg(&[(3, 0.5), (2, 0.0)]);
        for w in [0.0, -0.2, f64::NAN, f64::INFINITY] {
            let out = convex(&b, &v, &Convex { bm25_weight: w, ..Convex::default() });
            assert_eq!(ids(&out), vec![3, 2]);
            assert!(out.iter().all(|f| f.bm25_rank.is_none()));
            assert!(close(get(&out, 2).score, 1.0 / 1.5));
        }
        let off = Convex { bm25_weight: 0.0, vector_weight: 0.0, ..Convex::default() };
        assert!(convex(&b, &v, &off).is_empty());
        assert!(convex::<[u8; 16]>(&[], &[], &Convex::default()).is_empty());
    }

    #[test]
    fn convex_non_finite_scores_do_not_panic() {
        let b = leg(&[(1, f64::INFINITY), (2, f64::NAN), (3, 6.0), (4, 3.0), (5, f64::NEG_INFINITY)]);
        let v = leg(&[(2, f64::NAN), (6, f64::NAN)]);
        let out = convex(&b, &v, &Convex::default());
        assert_eq!(out.len(), 6);
        assert!(out.iter().all(|f| f.score.is_finite()));
        // bm25: 1 -> 1.0 (+inf), 3 -> 1.0, 4 -> .5, 2 and 5 -> .5 (lowest), 6 -> absent .5;
        // vector: nothing finite -> all 1.0. So 1 and 3 first (rank 1 before rank 3).
        assert_eq!(&ids(&out)[..2], &[1, 3]);
        assert!(close(get(&out, 1).score, 0.2 + 0.8));
        assert!(close(get(&out, 6).score, 0.2 * 0.5 + 0.8));
    }

    #[test]
    fn duplicates_keep_the_best_rank_and_the_chunks_columns() {
        // Chunk 1 twice in BM25 (ranks 3 and 1): rank 1 and its score are used.
        let b = vec![c(2, 2, 0, 5.0, 2), c(1, 1, 4, 1.0, 3), c(1, 1, 4, 10.0, 1)];
        let out = convex(&b, &[], &Convex::default());
        assert_eq!(ids(&out), vec![1, 2]);
        assert_eq!(get(&out, 1).bm25_rank, Some(1));
        assert_eq!(get(&out, 1).score, 1.0);
        assert_eq!(get(&out, 1).chunk_index, 4);
        assert_eq!(get(&out, 1).document[0], 1);
        let out = rrf(&b, &[], &Rrf::default());
        assert_eq!(get(&out, 1).score, 1.0 / 61.0);
    }

    #[test]
    fn fuse_dispatches_and_defaults() {
        let b = leg(&[(1, 10.0), (2, 5.0), (3, 0.0)]);
        let v = leg(&[(3, 0.5), (1, 0.0)]);
        assert_eq!(fuse(&b, &v, &Fusion::default()), convex(&b, &v, &Convex::default()));
        assert_eq!(fuse(&b, &v, &Fusion::Rrf(Rrf::default())), rrf(&b, &v, &Rrf::default()));
        assert_eq!(Rrf::default(), Rrf { bm25_weight: 1.0, vector_weight: 1.0, k: 60.0 });
        let tuned = Convex { bm25_weight: 0.2, vector_weight: 0.8, bm25_floor: 0.0, vector_floor: -1.0 };
        assert_eq!(Convex::default(), tuned);
    }

    #[test]
    fn generic_ids_work() {
        // Any Ord + Clone id: strings here.
        let mk = |id: &str, rank: u32| Candidate {
            id: id.to_string(),
            document: format!("d{id}"),
            chunk_index: 0,
            score: 1.0 / f64::from(rank),
            rank,
        };
        let out = rrf(&[mk("b", 1), mk("a", 2)], &[mk("a", 1), mk("b", 2)], &Rrf::default());
        assert_eq!(out.iter().map(|f| f.id.as_str()).collect::<Vec<_>>(), vec!["a", "b"]);
    }
}
