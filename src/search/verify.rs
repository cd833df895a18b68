//! The BM25 index's health after crashes. pg_search 0.21 (the version this project ships) does not
//! WAL-log its index: a crash loses what was indexed since the last checkpoint (the rows are in the
//! table, the index misses them), and a crash in the middle of a write can leave the index damaged
//! (searches then fail with errors such as "invalid chunk style tag"). WAL-logging of the index came
//! to the community edition in a later release.
//!
//! `rag.verify(repair)` compares the rows of `rag.chunks` with what the index returns:
//! - missing rows are re-indexed by deleting and re-inserting them (same ids, same values) in one
//!   statement per slice: an ordinary write, so searches and other writes go on meanwhile;
//! - a damaged index (the index query itself fails) is rebuilt: nothing short of a rebuild can trust
//!   it. `rag.verify(repair => true)` runs in a transaction, so it can only use `REINDEX INDEX`, which
//!   blocks searches of this table while it runs (seconds per 100k chunks). The worker rebuilds with
//!   `REINDEX INDEX CONCURRENTLY` instead (`compact.rs`), so searches (answered from the vector leg
//!   meanwhile) and writes go on.
//! The background worker runs the check at start (after every crash recovery the launcher starts
//! it) and when its configuration is reloaded, while `rag.bm25_auto_repair` is on.

use crate::errors::{self, SpiOk};
use crate::queue::subxact;
use pgrx::prelude::*;
use pgrx::Uuid;

const TABLE_ROWS: &str = "SELECT count(*) FROM rag.chunks";
/// What the index holds (visible rows only: pg_search checks each hit against the heap).
const INDEX_ROWS: &str = "SELECT count(*) FROM rag.chunks WHERE id @@@ paradedb.all()";
const MISSING_ROWS: &str = "SELECT id FROM (SELECT id FROM rag.chunks EXCEPT SELECT id FROM rag.chunks WHERE id @@@ paradedb.all()) m LIMIT $1";
const MISSING_COUNT: &str = "SELECT count(*) FROM (SELECT id FROM rag.chunks EXCEPT SELECT id FROM rag.chunks WHERE id @@@ paradedb.all()) m";
/// Same ids, same values, new row versions: every index of the table gets them again.
const REINSERT: &str = "\
WITH gone AS (DELETE FROM rag.chunks WHERE id = ANY($1) RETURNING *) INSERT INTO rag.chunks SELECT * FROM gone";
const REBUILD: &str = "REINDEX INDEX rag.chunks_bm25";

/// Rows re-indexed per statement.
const SLICE: i64 = 5_000;

/// What a check found (and did).
#[derive(Debug, Clone, PartialEq)]
pub struct Health {
    pub status: &'static str,
    pub chunks: i64,
    pub indexed: Option<i64>,
    pub missing: i64,
    pub repaired: i64,
    pub detail: String,
}

fn count(sql: &str) -> i64 {
    crate::read::one::<i64>(sql, &[]).or_raise("counting chunks").unwrap_or(0)
}

/// Check the BM25 index against the table; with `repair`, re-index missing rows, and rebuild a damaged
/// index when `rebuild` too (blocking: see above). Runs in the caller's transaction (cancel and
/// timeouts end it as usual).
pub fn check(repair: bool, rebuild: bool) -> Health {
    let _plan = super::index_only_plan(crate::guc::HNSW_EF_SEARCH.get());
    let chunks = count(TABLE_ROWS);
    let probe = subxact::run(|| {
        let indexed = count(INDEX_ROWS);
        let missing = if indexed < chunks { count(MISSING_COUNT) } else { 0 };
        (indexed, missing)
    });
    match probe {
        Ok((indexed, 0)) => Health { status: "ok", chunks, indexed: Some(indexed), missing: 0, repaired: 0, detail: String::new() },
        Ok((indexed, missing)) => {
            let mut h = Health {
                status: "missing rows",
                chunks,
                indexed: Some(indexed),
                missing,
                repaired: 0,
                detail: format!("{missing} of {chunks} chunks are not in the BM25 index (lost in a crash)"),
            };
            if repair {
                h.repaired = reindex_missing();
                h.status = "repaired";
            }
            h
        }
        Err(f) => {
            let mut h = Health {
                status: "damaged",
                chunks,
                indexed: None,
                missing: chunks,
                repaired: 0,
                detail: format!("the BM25 index rag.chunks_bm25 cannot be read: {}", f.message),
            };
            if repair && rebuild {
                Spi::run(REBUILD).or_raise("rebuilding the BM25 index");
                h.repaired = chunks;
                h.status = "repaired";
            }
            h
        }
    }
}

fn missing_ids(limit: i64) -> Vec<Uuid> {
    Spi::connect(|client| {
        client
            .select(MISSING_ROWS, None, &[limit.into()])?
            .filter_map(|r| r.get::<Uuid>(1).transpose())
            .collect::<Result<Vec<_>, pgrx::spi::SpiError>>()
    })
    .or_raise("finding chunks missing from the BM25 index")
}

/// Re-insert the missing rows slice by slice; returns how many.
fn reindex_missing() -> i64 {
    let mut done = 0;
    loop {
        crate::interrupts::check();
        let ids = missing_ids(SLICE);
        if ids.is_empty() {
            return done;
        }
        let n = ids.len() as i64;
        Spi::run_with_args(REINSERT, &[ids.into()]).or_raise("re-indexing chunks missing from the BM25 index");
        done += n;
        if n < SLICE {
            return done;
        }
    }
}

/// Check the BM25 index against rag.chunks and, with `repair`, fix it. One row: `status` is `ok`,
/// `missing rows`, `damaged` or (after a repair) `repaired`.
#[pg_extern(volatile, parallel_unsafe)]
fn verify(
    repair: default!(bool, false),
) -> TableIterator<
    'static,
    (
        name!(status, String),
        name!(chunks, i64),
        name!(bm25_indexed, Option<i64>),
        name!(missing, i64),
        name!(repaired, i64),
        name!(detail, String),
    ),
> {
    let h = check(repair, repair);
    if h.status != "ok" && h.status != "repaired" {
        errors::warn(h.detail.clone(), "Repair it with SELECT * FROM rag.verify(repair => true).");
    }
    TableIterator::once((h.status.to_string(), h.chunks, h.indexed, h.missing, h.repaired, h.detail))
}

/// The worker's check at start and on reload: re-index missing rows, and log what was found. True
/// when the index is damaged: the worker then rebuilds it concurrently, outside this transaction.
pub fn heal_in_worker() -> bool {
    let h = check(true, false);
    match h.status {
        "ok" => debug1!("ragbench: BM25 index holds all {} chunks", h.chunks),
        "damaged" => warning!("ragbench: BM25 index check: {}; rebuilding it concurrently", h.detail),
        _ => warning!("ragbench: BM25 index check: {} — {} chunks re-indexed", h.detail, h.repaired),
    }
    h.status == "damaged"
}
