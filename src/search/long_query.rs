//! Long BM25 queries (`rag.bm25_max_query_terms`): the query is cut to its highest-weight terms before
//! it reaches pg_search (the choice is `ragbench_core::query_terms`), using document frequencies that
//! the background worker keeps in `rag.bm25_term_stats` from a sample of the chunks.
//!
//! The statistics cover every tenant (like BM25's own statistics); callers reach them only through
//! `rag._term_stats(terms)`, which answers for the terms of their own query and lists nothing else.

use crate::errors::SpiOk;
use crate::guc;
use pgrx::prelude::*;
use ragbench_core::query_terms;
use std::collections::HashMap;

/// The BM25 leg's predicate on `content_with_context`: the query as it is (`||| $1`), or the kept
/// terms of a long one, one `|||` clause per query-term count, boosted by that count (the first in
/// `$1`, the others in parameters from `extra_from` on). The SQL holds only integers and placeholders;
/// the words are parameters.
pub struct Bm25Match {
    groups: Vec<(usize, String)>,
}

impl Bm25Match {
    /// The query as it is.
    pub fn whole(query: &str) -> Self {
        Bm25Match { groups: vec![(1, query.to_string())] }
    }

    /// `$1`'s value.
    pub fn first(&self) -> &str {
        self.groups.first().map(|(_, w)| w.as_str()).unwrap_or("")
    }

    /// The predicate, with the groups after the first in `$extra_from`, `$extra_from + 1`, …
    pub fn predicate(&self, extra_from: usize) -> String {
        let clause = |param: usize, count: usize| {
            if count <= 1 {
                format!("content_with_context ||| ${param}")
            } else {
                format!("content_with_context ||| ${param}::pdb.boost({count})")
            }
        };
        let clauses: Vec<String> = self
            .groups
            .iter()
            .enumerate()
            .map(|(i, (count, _))| clause(if i == 0 { 1 } else { extra_from + i - 1 }, *count))
            .collect();
        format!("({})", clauses.join(" OR "))
    }

    /// The values of the extra parameters, in order.
    pub fn extra(&self) -> Vec<&str> {
        self.groups.iter().skip(1).map(|(_, w)| w.as_str()).collect()
    }
}

/// The tokens of a text expression, by the tokenizer of `content_with_context` in rag.chunks_bm25
/// (sql/ragbench--0.3.0--0.4.0.sql): one literal for the query's words and the worker's sample.
macro_rules! tokens_of {
    ($expr:literal) => {
        concat!($expr, "::pdb.simple('stemmer=english', 'stopwords_language=english')::text[]")
    };
}

const STEMS: &str = concat!("SELECT w, ", tokens_of!("w"), " FROM unnest($1::text[]) AS w");
const TERM_STATS: &str = "SELECT term, df, docs FROM rag._term_stats($1)";

/// Chunks the worker samples for the term statistics.
const SAMPLE_CHUNKS: f64 = 20_000.0;
const REFRESH_STATS: &str = concat!(
    "\
WITH sample AS (
    SELECT content_with_context FROM rag.chunks TABLESAMPLE SYSTEM ($1) REPEATABLE (7)
), tokens AS (
    SELECT t.term
    FROM sample s
    CROSS JOIN LATERAL (
        SELECT DISTINCT u AS term
        FROM unnest(",
    tokens_of!("s.content_with_context"),
    ") AS u
    ) t
), counted AS (
    SELECT term, count(*) AS n FROM tokens GROUP BY term
), sampled AS (
    SELECT count(*) AS n FROM sample
), stats AS (
    INSERT INTO rag.bm25_term_stats (term, df)
    SELECT term, n * $2 / greatest((SELECT n FROM sampled), 1) FROM counted
)
INSERT INTO rag.bm25_term_stats_info (id, chunks, sampled, refreshed_at)
VALUES (1, $2, (SELECT n FROM sampled), now())
ON CONFLICT (id) DO UPDATE SET chunks = EXCLUDED.chunks, sampled = EXCLUDED.sampled, refreshed_at = EXCLUDED.refreshed_at"
);
/// The chunk count the statistics were made from, and the table's now: the planner's estimate
/// (`reltuples`, kept by autovacuum), so that the check every 30 s does not scan a large table; an exact
/// count only while the table has never been analysed (`-1`).
const STATS_AGE: &str = "\
SELECT (SELECT chunks FROM rag.bm25_term_stats_info WHERE id = 1),
       (SELECT CASE WHEN c.reltuples >= 0 THEN c.reltuples::float8 ELSE (SELECT count(*) FROM rag.chunks)::float8 END
        FROM pg_class c WHERE c.oid = 'rag.chunks'::regclass)";

/// What the BM25 leg matches for `query`: the query itself, or its highest-weight terms when it has
/// more distinct terms than `rag.bm25_max_query_terms`.
pub fn bm25_match(query: &str) -> Bm25Match {
    let whole = || Bm25Match::whole(query);
    let cap = guc::BM25_MAX_QUERY_TERMS.get().max(0) as usize;
    let words = query_terms::word_counts(query);
    if cap == 0 || words.len() <= cap {
        return whole();
    }
    let distinct: Vec<&str> = words.iter().map(|(w, _)| w.as_str()).collect();
    let stems: HashMap<String, Vec<String>> = Spi::connect(|client| {
        client
            .select(STEMS, None, &[distinct.into()])?
            .map(|r| Ok((r.get::<String>(1)?.unwrap_or_default(), r.get::<Vec<String>>(2)?.unwrap_or_default())))
            .collect::<Result<_, pgrx::spi::SpiError>>()
    })
    .or_raise("tokenizing the query");
    let all: Vec<&str> = stems.values().flatten().map(String::as_str).collect();
    let (df, docs) = Spi::connect(|client| {
        let mut df = HashMap::new();
        let mut docs = 0.0;
        for r in client.select(TERM_STATS, None, &[all.into()])? {
            let (Some(term), Some(n), Some(total)) = (r.get::<String>(1)?, r.get::<f32>(2)?, r.get::<f64>(3)?) else {
                continue;
            };
            df.insert(term, n as f64);
            docs = total;
        }
        Ok::<_, pgrx::spi::SpiError>((df, docs))
    })
    .or_raise("reading the BM25 term statistics");
    if docs <= 0.0 {
        // No statistics yet (the worker makes them): run the query as it is.
        return whole();
    }
    match query_terms::capped_query(&words, &stems, &df, docs, cap) {
        Some(groups) if !groups.is_empty() => Bm25Match { groups },
        _ => whole(),
    }
}

/// Whether the statistics are missing or the table has changed by more than a fifth since.
pub fn stats_stale() -> bool {
    match crate::read::two::<f64, f64>(STATS_AGE, &[]).or_raise("reading the BM25 term statistics") {
        Some((None, Some(now))) => now > 0.0,
        Some((Some(then), Some(now))) => (now - then).abs() > (then * 0.2).max(100.0),
        _ => false,
    }
}

/// Recompute the statistics from a sample of the chunks (the worker, as the superuser).
pub fn refresh_stats() {
    let chunks = crate::read::one::<i64>("SELECT count(*) FROM rag.chunks", &[]).or_raise("counting chunks").unwrap_or(0) as f64;
    let percent = if chunks <= SAMPLE_CHUNKS { 100.0 } else { (SAMPLE_CHUNKS * 100.0 / chunks).max(0.01) };
    // Two statements: one statement's CTEs may not delete and insert the same keys.
    Spi::run("DELETE FROM rag.bm25_term_stats").or_raise("refreshing the BM25 term statistics");
    Spi::run_with_args(REFRESH_STATS, &[percent.into(), chunks.into()]).or_raise("refreshing the BM25 term statistics");
}
