//! Compaction of the BM25 index by the background worker.
//!
//! Every write statement adds a pg_search segment, and pg_search's own merging (layered, in the
//! background) leaves tens of segments after a corpus that arrived one document at a time; every
//! search then pays per segment. pg_search 0.21 offers no merge that a function could call (its
//! `force_merge` is gone, VACUUM only starts its layered merger), so the worker rebuilds the index
//! with `REINDEX INDEX CONCURRENTLY`, run as a top-level command (`queue/toplevel.rs`): searches and
//! writes go on meanwhile, and the new index has pg_search's target segment count.
//!
//! When: the first worker of the database, while its queue is empty, checks the segment count at most
//! once a second. It rebuilds when the count is above `rag.bm25_compact_segments` (and above what the
//! last rebuild left, so that a machine whose target count is higher does not rebuild in a loop) and
//! has not changed for `rag.bm25_compact_quiet` seconds (writes have paused), or at once when an
//! administrator asked with `rag.compact()`. A damaged index found at start is rebuilt the same way.
//! Each rebuild is a row of `rag.bm25_compactions`: when, why, segments before and after, how long,
//! and the error if it failed.

use crate::errors::SpiOk;
use crate::guc;
use super::long_query;
use crate::queue::worker::in_transaction;
use crate::queue::{subxact, toplevel};
use pgrx::prelude::*;
use std::time::{Duration, Instant};

const SEGMENTS: &str = "SELECT count(*) FROM paradedb.index_info('rag.chunks_bm25')";
const NEXT_REQUEST: &str = "SELECT min(id) FROM rag.bm25_compactions WHERE started_at IS NULL";
const START_REQUEST: &str = "UPDATE rag.bm25_compactions SET started_at = clock_timestamp(), segments_before = $2 WHERE id = $1";
const START_AUTOMATIC: &str = "\
INSERT INTO rag.bm25_compactions (reason, requested_by, started_at, segments_before)
VALUES ($1, current_user, clock_timestamp(), $2) RETURNING id";
const FINISH: &str = "\
UPDATE rag.bm25_compactions SET finished_at = clock_timestamp(), segments_after = $2, error = $3 WHERE id = $1";
/// Half-built or half-dropped copies of the index that an interrupted rebuild left behind.
const LEFTOVERS: &str = "\
SELECT string_agg(format('%I.%I', n.nspname, c.relname), ',')
FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE i.indrelid = 'rag.chunks'::regclass AND NOT i.indisvalid AND c.relname ~ '^chunks_bm25_cc(new|old)[0-9]*$'";
const REBUILD: &str = "REINDEX INDEX CONCURRENTLY rag.chunks_bm25";

/// How often the idle worker looks at the segment count.
const CHECK_EVERY: Duration = Duration::from_secs(1);
/// How often it checks whether the BM25 term statistics (`long_query.rs`) are stale.
const STATS_EVERY: Duration = Duration::from_secs(30);

fn segments() -> i64 {
    crate::read::one::<i64>(SEGMENTS, &[]).or_raise("counting BM25 segments").unwrap_or(0)
}

/// The worker's view of the index between checks.
pub struct Compactor {
    last_check: Option<Instant>,
    seen: i64,
    unchanged_since: Instant,
    /// Segments the last rebuild left (pg_search's target count): never rebuild for fewer.
    floor: i64,
    cleaned: bool,
    stats_checked: Option<Instant>,
}

impl Default for Compactor {
    fn default() -> Self {
        Compactor { last_check: None, seen: -1, unchanged_since: Instant::now(), floor: 0, cleaned: false, stats_checked: None }
    }
}

impl Compactor {
    /// Called by the first worker of the database when its queue is empty.
    pub fn tick(&mut self) {
        if self.last_check.is_some_and(|t| t.elapsed() < CHECK_EVERY) {
            return;
        }
        self.last_check = Some(Instant::now());
        if !self.cleaned {
            self.cleaned = true;
            drop_leftovers();
        }
        // A damaged index makes the count fail: that is the start-up check's business, not a reason to stop.
        let read = in_transaction(|| {
            subxact::run(|| (segments(), crate::read::one::<i64>(NEXT_REQUEST, &[]).or_raise("reading compaction requests")))
        });
        let Ok((count, request)) = read else {
            return;
        };
        if count != self.seen {
            self.seen = count;
            self.unchanged_since = Instant::now();
        }
        if let Some(id) = request {
            self.floor = rebuild(Some(id), "requested", Some(count));
            return;
        }
        if self.stats_checked.is_none_or(|t| t.elapsed() >= STATS_EVERY) {
            self.stats_checked = Some(Instant::now());
            refresh_stats_if_stale();
        }
        let threshold = guc::BM25_COMPACT_SEGMENTS.get() as i64;
        let quiet = Duration::from_secs(guc::BM25_COMPACT_QUIET_S.get().max(1) as u64);
        if threshold > 0 && count > threshold && count > self.floor && self.unchanged_since.elapsed() >= quiet {
            self.floor = rebuild(None, "automatic", Some(count));
            self.seen = self.floor;
        }
    }

    /// Rebuild a damaged index (found by the start-up check).
    pub fn repair(&mut self) {
        self.cleaned = true;
        self.floor = rebuild(None, "repair", None);
    }
}

/// Rebuild the index concurrently and record it; returns the segments after (or before, if it failed).
pub fn rebuild(request: Option<i64>, reason: &str, before: Option<i64>) -> i64 {
    let id = in_transaction(|| match request {
        Some(id) => {
            Spi::run_with_args(START_REQUEST, &[id.into(), before.into()]).or_raise("recording the compaction");
            Some(id)
        }
        None => Spi::get_one_with_args::<i64>(START_AUTOMATIC, &[reason.into(), before.into()]).or_raise("recording the compaction"),
    });
    drop_leftovers();
    let started = Instant::now();
    let outcome = toplevel::run(REBUILD);
    let ms = started.elapsed().as_millis();
    if outcome.is_err() {
        drop_leftovers();
    }
    let after = in_transaction(|| subxact::run(segments).ok());
    let error = outcome.as_ref().err().map(|f| f.message.clone());
    if error.is_none() {
        refresh_stats(); // the table has settled: a good moment for the statistics of long queries
    }
    in_transaction(|| {
        Spi::run_with_args(FINISH, &[id.into(), after.into(), error.as_deref().into()]).or_raise("recording the compaction")
    });
    let show = |n: Option<i64>| n.map_or("?".to_string(), |n| n.to_string());
    match &error {
        None => log!("ragbench worker: rebuilt the BM25 index ({reason}): {} → {} segments in {ms} ms", show(before), show(after)),
        Some(e) => warning!("ragbench worker: rebuilding the BM25 index ({reason}) failed after {ms} ms: {e}"),
    }
    if error.is_none() { after.unwrap_or(0) } else { before.unwrap_or(0) }
}

/// Recompute the term statistics of long queries when the table has changed enough; failures are
/// logged and retried at the next check.
fn refresh_stats_if_stale() {
    if in_transaction(|| subxact::run(long_query::stats_stale).unwrap_or(false)) {
        refresh_stats();
    }
}

fn refresh_stats() {
    match in_transaction(|| subxact::run(long_query::refresh_stats)) {
        Ok(()) => log!("ragbench worker: refreshed the BM25 term statistics"),
        Err(f) => warning!("ragbench worker: refreshing the BM25 term statistics failed: {}", f.message),
    }
}

/// Drop the invalid copies an interrupted rebuild left (they would slow every write down).
fn drop_leftovers() {
    let names = in_transaction(|| crate::read::one::<String>(LEFTOVERS, &[]).or_raise("looking for leftover indexes"));
    for name in names.unwrap_or_default().split(',').filter(|n| !n.is_empty()) {
        // The names come from pg_class, quoted by format('%I.%I').
        match toplevel::run(&format!("DROP INDEX CONCURRENTLY IF EXISTS {name}")) {
            Ok(()) => log!("ragbench worker: dropped {name}, left by an interrupted rebuild of the BM25 index"),
            Err(f) => warning!("ragbench worker: could not drop {name}: {}", f.message),
        }
    }
}
