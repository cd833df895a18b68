//! Hybrid search: the BM25 leg and the vector leg run in one statement, inside the database, and are
//! fused by `ragbench_core::fusion` (pure Rust, unit-tested on hand-made rankings).
//!
//! Default, `fusion => 'convex'`: each leg's score is normalised by its theoretical floor and this
//! query's best score, `(score - floor) / (best - floor)` (BM25 floor 0, cosine floor -1), and
//! fused = 0.2 * bm25 + 0.8 * vector; a chunk one leg did not return gets that leg's lowest normalised
//! value. The weights were tuned on SciFact's train split and Cranfield (scripts/fusion_lab.py), with
//! the built-in model's cosine scores. `fusion => 'rrf'` is the earlier behaviour:
//! score = bm25_weight / (rrf_k + bm25_rank) + vector_weight / (rrf_k + vector_rank).
//! The metadata filter is applied inside both legs (the vector leg uses pgvector's iterative scan), so a
//! selective filter still yields `k` rows. Ties are broken by the best single-leg rank, then by the
//! chunk's position in its document (earlier first), then by chunk id.

use super::timing::Stopwatch;
use super::{index_only_plan, query_embedding, MAX_K};
use crate::errors::{self, SpiOk};
use crate::guc;
use crate::queue::subxact;
use pgrx::prelude::*;
use crate::jsonb_arg::JsonbArg;
use pgrx::spi::OwnedPreparedStatement;
use pgrx::{JsonB, Uuid};
use std::mem::ManuallyDrop;
use ragbench_core::fusion::{self, Candidate, Fusion};

/// Default candidates per leg when the caller passes NULL.
pub const DEFAULT_CANDIDATES: i32 = 100;

/// Both legs' candidates, tagged by leg. `{D}` is the model's dimension (integer), `{BM25}` is
/// `BM25_LEG` or `NO_BM25_LEG`, `{FILTER_B}` / `{FILTER_V}` are either empty or the fixed text
/// `AND metadata @> $4`: nothing from the caller is formatted into the statement.
const CANDIDATES: &str = "\
WITH bm25 AS ({BM25}), vec AS (
    SELECT id, chunk_index, (1 - distance)::float8 AS score, row_number() OVER (ORDER BY distance, id) AS r
    FROM (SELECT id, chunk_index, embedding::vector({D}) <=> $2::real[]::vector({D}) AS distance
          FROM rag.chunks
          WHERE embedding_model = $3 {FILTER_V}
          ORDER BY embedding::vector({D}) <=> $2::real[]::vector({D})
          LIMIT $6) v
)
SELECT true AS bm25, id, chunk_index, score, r FROM bm25
UNION ALL
SELECT false, id, chunk_index, score, r FROM vec";

const BM25_LEG: &str = "\
    SELECT id, chunk_index, score::float8 AS score, row_number() OVER (ORDER BY score DESC, id) AS r
    FROM (SELECT id, chunk_index, pdb.score(id) AS score
          FROM rag.chunks
          WHERE {MATCH} {FILTER_B}
          ORDER BY pdb.score(id) DESC
          LIMIT $5) b";

/// The BM25 leg when the index cannot be read: no row, and no reference to the index. ($1 and $5 are
/// still typed by the statement's other uses.)
const NO_BM25_LEG: &str =
    "SELECT NULL::uuid AS id, NULL::int AS chunk_index, NULL::float8 AS score, NULL::bigint AS r WHERE $1::text IS NULL AND $5::bigint < 0";

/// The fused chunks' columns, in the fused order (`{ROW_BY_ID}` is `super::ROW_BY_ID`). Prepared once per
/// backend (`ROWS_PLAN`): its primary-key probes need no per-call planning (0.7 -> 0.3 ms at 1M chunks as an
/// application role). PostgreSQL's plan cache re-plans it after DDL and for another role or `row_security`;
/// the tenant is an InitPlan of the policy, read at each execution.
const ROWS: &str = "\
SELECT c.id, c.document_id, d.file_name, c.chunk_index, c.content, 0::float8, c.metadata
FROM unnest($1::uuid[]) WITH ORDINALITY AS hit(id, ord)
{ROW_BY_ID}
ORDER BY hit.ord";

thread_local! {
    /// Never dropped (`ManuallyDrop`): it lives as long as the backend, and freeing an SPI plan from a
    /// thread-local destructor at process exit would call into PostgreSQL after it has shut down.
    static ROWS_PLAN: std::cell::RefCell<Option<ManuallyDrop<OwnedPreparedStatement>>> =
        const { std::cell::RefCell::new(None) };
}

pub struct HybridParams {
    pub k: i32,
    pub filter: Option<serde_json::Value>,
    pub bm25_weight: f64,
    pub vector_weight: f64,
    pub rrf_k: i32,
    pub candidates: i32,
    pub fusion: FusionKind,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum FusionKind {
    Convex,
    Rrf,
}

impl FusionKind {
    pub fn parse(s: &str) -> Self {
        match s.trim().to_lowercase().as_str() {
            "convex" => FusionKind::Convex,
            "rrf" => FusionKind::Rrf,
            other => errors::invalid(
                format!("unknown fusion '{other}'"),
                "Use 'convex' (normalised scores, the default) or 'rrf' (reciprocal rank fusion).",
            ),
        }
    }

    /// The method's own weights (bm25, vector) when the caller passes NULL.
    pub fn default_weights(self) -> (f64, f64) {
        match self {
            FusionKind::Convex => {
                let c = fusion::Convex::default();
                (c.bm25_weight, c.vector_weight)
            }
            FusionKind::Rrf => (1.0, 1.0),
        }
    }
}

pub type HybridRow = (Uuid, Uuid, String, i32, String, f64, Option<i32>, Option<i32>, JsonB);

pub fn check(p: &HybridParams) {
    super::check_k(p.k);
    for (name, w) in [("bm25_weight", p.bm25_weight), ("vector_weight", p.vector_weight)] {
        if !w.is_finite() || w < 0.0 {
            errors::invalid(
                format!("{name} must be a finite number >= 0, got {w}"),
                "Pass NULL for the fusion's own weights (convex 0.2 / 0.8, rrf 1 / 1).",
            );
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

pub fn hybrid_rows(query: &str, p: &HybridParams, sw: &Stopwatch) -> Vec<HybridRow> {
    check(p);
    if query.trim().is_empty() {
        return Vec::new();
    }
    // The vector leg needs a model with stored vectors; without one it contributes nothing.
    let embedding = if p.vector_weight > 0.0 { query_embedding(query, sw) } else { None };
    let (qv, model, dims, vec_limit) = match embedding {
        Some((v, m, d)) => (v, m, d, p.candidates),
        // vector leg off: a placeholder 1-d vector, LIMIT 0, and a model no row has
        None => (vec![1.0], String::new(), 1, 0),
    };
    let bm25_limit = if p.bm25_weight > 0.0 { p.candidates } else { 0 };
    let method = match p.fusion {
        FusionKind::Convex => Fusion::Convex(fusion::Convex {
            bm25_weight: p.bm25_weight,
            vector_weight: p.vector_weight,
            ..fusion::Convex::default()
        }),
        FusionKind::Rrf => Fusion::Rrf(fusion::Rrf {
            bm25_weight: p.bm25_weight,
            vector_weight: p.vector_weight,
            k: p.rrf_k as f64,
        }),
    };
    // $1 (and $7 on) are the BM25 leg's text only (the vector leg has its embedding).
    let m = if bm25_limit > 0 {
        super::long_query::bm25_match(query)
    } else {
        super::long_query::Bm25Match::whole(query)
    };
    sw.phase("query terms");
    let filter_sql = if p.filter.is_some() { "AND metadata @> $4" } else { "" };
    let statement = |bm25_leg: &str| {
        CANDIDATES
            .replace("{BM25}", bm25_leg)
            .replace("{D}", &dims.to_string())
            .replace("{FILTER_B}", filter_sql)
            .replace("{FILTER_V}", filter_sql)
            .replace("{MATCH}", &m.predicate(7))
    };
    let sql = statement(BM25_LEG);
    let filter = p.filter.clone().unwrap_or_else(|| serde_json::json!({}));
    let _plan = index_only_plan(guc::HNSW_EF_SEARCH.get().max(p.candidates));
    let run = |sql: &str, bm25_limit: i32| {
        let (bm25, vector) = Spi::connect(|client| {
            let mut args: Vec<pgrx::datum::DatumWithOid> = vec![
                m.first().into(),
                qv.clone().into(),
                model.as_str().into(),
                JsonB(filter.clone()).into(),
                (bm25_limit as i64).into(),
                (vec_limit as i64).into(),
            ];
            args.extend(m.extra().into_iter().map(Into::into));
            let table = client.select(sql, None, &args)?;
            let (mut bm25, mut vector) = (Vec::new(), Vec::new());
            for row in table {
                let Some(id) = row.get::<Uuid>(2)? else { continue };
                let id = *id.as_bytes();
                let c = Candidate {
                    id,
                    document: id,
                    chunk_index: row.get::<i32>(3)?.unwrap_or_default(),
                    score: row.get::<f64>(4)?.unwrap_or(f64::NAN),
                    rank: row.get::<i64>(5)?.unwrap_or(1).clamp(1, u32::MAX as i64) as u32,
                };
                if row.get::<bool>(1)?.unwrap_or(false) { bm25.push(c) } else { vector.push(c) }
            }
            Ok::<_, pgrx::spi::SpiError>((bm25, vector))
        })
        .or_raise("hybrid search");
        sw.phase("candidates");
        crate::interrupts::check();
        let mut fused = fusion::fuse(&bm25, &vector, &method);
        fused.truncate(p.k.max(0) as usize);
        sw.phase("fusion");
        let rows = rows_of(fused);
        sw.phase("result rows");
        rows
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

/// The fused chunks' columns, read in one statement, in the fused order, with the fused score and ranks.
fn rows_of(fused: Vec<fusion::Fused<[u8; 16]>>) -> Vec<HybridRow> {
    if fused.is_empty() {
        return Vec::new();
    }
    let ids: Vec<Uuid> = fused.iter().map(|f| Uuid::from_bytes(f.id)).collect();
    let rows = Spi::connect(|client| {
        ROWS_PLAN.with(|slot| {
            let mut slot = slot.borrow_mut();
            let plan = match slot.take() {
                Some(plan) => plan,
                None => {
                    let sql = ROWS.replace("{ROW_BY_ID}", super::ROW_BY_ID);
                    ManuallyDrop::new(client.prepare(sql.as_str(), &[PgOid::BuiltIn(PgBuiltInOids::UUIDARRAYOID)])?.keep())
                }
            };
            let plan: &OwnedPreparedStatement = slot.insert(plan);
            let table = client.select(plan, None, &[ids.into()])?;
            table.map(|row| super::read_row(&row)).collect::<Result<Vec<_>, pgrx::spi::SpiError>>()
        })
    })
    .or_raise("hybrid search: reading the fused chunks");
    // A chunk deleted between the two statements is simply missing; the others keep their order.
    let mut by_id: std::collections::HashMap<[u8; 16], _> = rows.into_iter().map(|r| (*r.0.as_bytes(), r)).collect();
    let rank = |r: Option<u32>| r.map(|r| r.min(i32::MAX as u32) as i32);
    fused
        .into_iter()
        .filter_map(|f| {
            by_id.remove(&f.id).map(|(id, doc, file, idx, content, _, meta)| {
                (id, doc, file, idx, content, f.score, rank(f.bm25_rank), rank(f.vector_rank), meta)
            })
        })
        .collect()
}

/// Hybrid search: BM25 and vector search fused (convex by default, or weighted RRF), each leg's rank shown (NULL where that leg
/// did not return the chunk).
#[pg_extern(stable, parallel_unsafe)]
#[allow(clippy::too_many_arguments)]
fn hybrid_search(
    query: &str,
    k: default!(i32, 10),
    filter: default!(Option<JsonbArg>, "NULL"),
    bm25_weight: default!(Option<f64>, "NULL"),
    vector_weight: default!(Option<f64>, "NULL"),
    rrf_k: default!(i32, 60),
    candidates: default!(Option<i32>, "NULL"),
    fusion: default!(&str, "'convex'"),
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
    let kind = FusionKind::parse(fusion);
    let weights = kind.default_weights();
    let params = HybridParams {
        k,
        filter: filter.map(|f| {
            f.parse("search filter", &crate::ingest::limits()).unwrap_or_else(|e| {
                errors::invalid(format!("{e}"), "Filter on fewer, flatter metadata keys.")
            })
        }),
        bm25_weight: bm25_weight.unwrap_or(weights.0),
        vector_weight: vector_weight.unwrap_or(weights.1),
        rrf_k,
        candidates: candidates.unwrap_or_else(|| DEFAULT_CANDIDATES.max(k)),
        fusion: kind,
    };
    let sw = Stopwatch::start();
    let rows = hybrid_rows(query, &params, &sw);
    sw.report("rag.hybrid_search");
    TableIterator::new(rows)
}
