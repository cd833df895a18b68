//! Hybrid search: weighted Reciprocal Rank Fusion of the BM25 leg and the vector leg, in one statement.
//!
//! score(chunk) = bm25_weight / (rrf_k + bm25_rank) + vector_weight / (rrf_k + vector_rank)
//! A leg that did not return the chunk adds nothing. The metadata filter is applied inside both legs
//! (the vector leg uses pgvector's iterative scan), so a selective filter still yields `k` rows.
//! Ties are broken by the best single-leg rank, then by the chunk's position in its document (earlier
//! first), then by chunk id: deterministic and meaningful. (Position before id was chosen on SciFact's
//! train split, nDCG@10 0.7296 -> 0.7303; ids are random per ingest, positions are not.)

use super::{index_only_plan, query_embedding, MAX_K};
use crate::errors::{self, SpiOk};
use crate::guc;
use crate::queue::subxact;
use pgrx::prelude::*;
use crate::jsonb_arg::JsonbArg;
use pgrx::{JsonB, Uuid};

/// Default candidates per leg when the caller passes NULL.
pub const DEFAULT_CANDIDATES: i32 = 100;

/// `{D}` is the model's dimension (integer), `{BM25}` is `BM25_LEG` or `NO_BM25_LEG`, `{FILTER_B}` /
/// `{FILTER_V}` are either empty or the fixed text `AND metadata @> $4`: nothing from the caller is
/// formatted into the statement. `{ROW_BY_ID}` is the fixed lookup of each hit's columns (`super::ROW_BY_ID`).
const HYBRID_SEARCH: &str = "\
WITH bm25 AS ({BM25}), vec AS (
    SELECT id, row_number() OVER (ORDER BY distance, id) AS r
    FROM (SELECT id, embedding::vector({D}) <=> $2::real[]::vector({D}) AS distance
          FROM rag.chunks
          WHERE embedding_model = $3 {FILTER_V}
          ORDER BY embedding::vector({D}) <=> $2::real[]::vector({D})
          LIMIT $6) v
), fused AS MATERIALIZED (
    SELECT coalesce(b.id, v.id) AS id, b.r AS bm25_rank, v.r AS vector_rank,
           coalesce($7 / ($9 + b.r), 0) + coalesce($8 / ($9 + v.r), 0) AS score
    FROM bm25 b FULL JOIN vec v ON v.id = b.id
)
SELECT c.id, c.document_id, d.file_name, c.chunk_index, c.content, hit.score::float8, c.metadata,
       hit.bm25_rank::int, hit.vector_rank::int
FROM fused hit
{ROW_BY_ID}
ORDER BY hit.score DESC, least(coalesce(hit.bm25_rank, 2147483647), coalesce(hit.vector_rank, 2147483647)), c.chunk_index, hit.id
LIMIT $10";

const BM25_LEG: &str = "\
    SELECT id, row_number() OVER (ORDER BY score DESC, id) AS r
    FROM (SELECT id, pdb.score(id) AS score
          FROM rag.chunks
          WHERE {MATCH} {FILTER_B}
          ORDER BY pdb.score(id) DESC
          LIMIT $5) b";

/// The BM25 leg when the index cannot be read: no row, and no reference to the index. ($1 and $5 are
/// still typed by the statement's other uses.)
const NO_BM25_LEG: &str = "SELECT NULL::uuid AS id, NULL::bigint AS r WHERE $1::text IS NULL AND $5::bigint < 0";

pub struct HybridParams {
    pub k: i32,
    pub filter: Option<serde_json::Value>,
    pub bm25_weight: f64,
    pub vector_weight: f64,
    pub rrf_k: i32,
    pub candidates: i32,
}

pub type HybridRow = (Uuid, Uuid, String, i32, String, f64, Option<i32>, Option<i32>, JsonB);

pub fn check(p: &HybridParams) {
    super::check_k(p.k);
    for (name, w) in [("bm25_weight", p.bm25_weight), ("vector_weight", p.vector_weight)] {
        if !w.is_finite() || w < 0.0 {
            errors::invalid(format!("{name} must be a finite number >= 0, got {w}"), "Weights of 1.0 give plain RRF.");
        }
    }
    if p.bm25_weight == 0.0 && p.vector_weight == 0.0 {
        errors::invalid("bm25_weight and vector_weight are both 0", "Give at least one leg a positive weight.");
    }
    if !(0..=100_000).contains(&p.rrf_k) {
        errors::invalid(format!("rrf_k must be between 0 and 100000, got {}", p.rrf_k), "60 is the usual value.");
    }
    if p.candidates < p.k || p.candidates > MAX_K {
        errors::invalid(
            format!("candidates must be between k ({}) and {MAX_K}, got {}", p.k, p.candidates),
            "Pass NULL for the default, or a number of candidates per leg at least as large as k.",
        );
    }
    if let Some(f) = &p.filter {
        if !f.is_object() {
            errors::invalid("filter must be a JSON object, e.g. '{\"lang\": \"en\"}'", "Pass NULL for no filter.");
        }
    }
}

pub fn hybrid_rows(query: &str, p: &HybridParams) -> Vec<HybridRow> {
    check(p);
    if query.trim().is_empty() {
        return Vec::new();
    }
    // The vector leg needs a model with stored vectors; without one it contributes nothing.
    let embedding = if p.vector_weight > 0.0 { query_embedding(query) } else { None };
    let (qv, model, dims, vec_limit) = match embedding {
        Some((v, m, d)) => (v, m, d, p.candidates),
        // vector leg off: a placeholder 1-d vector, LIMIT 0, and a model no row has
        None => (vec![1.0], String::new(), 1, 0),
    };
    let bm25_limit = if p.bm25_weight > 0.0 { p.candidates } else { 0 };
    // $1 (and $11 on) are the BM25 leg's text only (the vector leg has its embedding).
    let m = if bm25_limit > 0 {
        super::long_query::bm25_match(query)
    } else {
        super::long_query::Bm25Match::whole(query)
    };
    let filter_sql = if p.filter.is_some() { "AND metadata @> $4" } else { "" };
    let statement = |bm25_leg: &str| {
        HYBRID_SEARCH
            .replace("{BM25}", bm25_leg)
            .replace("{D}", &dims.to_string())
            .replace("{FILTER_B}", filter_sql)
            .replace("{FILTER_V}", filter_sql)
            .replace("{ROW_BY_ID}", super::ROW_BY_ID)
            .replace("{MATCH}", &m.predicate(11))
    };
    let sql = statement(BM25_LEG);
    let filter = p.filter.clone().unwrap_or_else(|| serde_json::json!({}));
    let _plan = index_only_plan(guc::HNSW_EF_SEARCH.get().max(p.candidates));
    let run = |sql: &str, bm25_limit: i32| {
        Spi::connect(|client| {
            let mut args: Vec<pgrx::datum::DatumWithOid> = vec![
                m.first().into(),
                qv.clone().into(),
                model.as_str().into(),
                JsonB(filter.clone()).into(),
                (bm25_limit as i64).into(),
                (vec_limit as i64).into(),
                p.bm25_weight.into(),
                p.vector_weight.into(),
                (p.rrf_k as f64).into(),
                (p.k as i64).into(),
            ];
            args.extend(m.extra().into_iter().map(Into::into));
            let table = client.select(sql, None, &args)?;
            table
                .map(|row| {
                    let (id, doc, file, idx, content, score, meta) = super::read_row(&row)?;
                    Ok((id, doc, file, idx, content, score, row.get::<i32>(8)?, row.get::<i32>(9)?, meta))
                })
                .collect::<Result<Vec<_>, pgrx::spi::SpiError>>()
        })
        .or_raise("hybrid search")
    };
    if bm25_limit == 0 || vec_limit == 0 {
        return run(&sql, bm25_limit);
    }
    let vector_only = || {
        // pg_search's planner hook reads the index for any query on the table: keep it out.
        let _off = super::ScopedSettings::new();
        _off.set(c"paradedb.enable_custom_scan", "off");
        run(&statement(NO_BM25_LEG), 0)
    };
    if crate::read::on_standby() {
        errors::warn(
            "this server is a hot standby, so rag.hybrid_search answered from the vector leg only: community \
             pg_search 0.21.14 does not WAL-log its BM25 index, and cannot read it on a standby",
            "Run searches that need BM25 on the primary. The tables and the vector index follow the primary.",
        );
        return vector_only();
    }
    // A damaged BM25 index (pg_search 0.21 does not WAL-log it; see rag.verify) must not take the
    // vector leg down with it: answer from the leg that works, and say so. Cancel and timeouts are
    // raised again by subxact::run, never answered from one leg.
    match subxact::run(|| run(&sql, bm25_limit)) {
        Ok(rows) => rows,
        Err(f) => {
            errors::warn(
                format!("the BM25 index failed, so rag.hybrid_search answered from the vector leg only: {}", f.message),
                "The BM25 index rag.chunks_bm25 needs repair: SELECT * FROM rag.verify(repair => true) (the background \
                 worker also repairs it when it starts, with rag.bm25_auto_repair on).",
            );
            vector_only()
        }
    }
}

/// Hybrid search: weighted RRF of BM25 and vector search, each leg's rank shown (NULL where that leg
/// did not return the chunk).
#[pg_extern(stable, parallel_unsafe)]
#[allow(clippy::too_many_arguments)]
fn hybrid_search(
    query: &str,
    k: default!(i32, 10),
    filter: default!(Option<JsonbArg>, "NULL"),
    bm25_weight: default!(f64, 1.0),
    vector_weight: default!(f64, 1.0),
    rrf_k: default!(i32, 60),
    candidates: default!(Option<i32>, "NULL"),
) -> TableIterator<
    'static,
    (
        name!(chunk_id, Uuid),
        name!(document_id, Uuid),
        name!(file_name, String),
        name!(chunk_index, i32),
        name!(content, String),
        name!(score, f64),
        name!(bm25_rank, Option<i32>),
        name!(vector_rank, Option<i32>),
        name!(metadata, JsonB),
    ),
> {
    let params = HybridParams {
        k,
        filter: filter.map(|f| {
            f.parse("search filter", &crate::ingest::limits()).unwrap_or_else(|e| {
                errors::invalid(format!("{e}"), "Filter on fewer, flatter metadata keys.")
            })
        }),
        bm25_weight,
        vector_weight,
        rrf_k,
        candidates: candidates.unwrap_or_else(|| DEFAULT_CANDIDATES.max(k)),
    };
    TableIterator::new(hybrid_rows(query, &params))
}
