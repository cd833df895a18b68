//! `#[pg_test]`s: SQL behaviour on a real cluster (pg_search, pgvector, pgmq, the built-in model).
//! Grouped by the module they exercise.

mod chat;
mod ingest;
mod queue;
mod search;
