//! ragbench: a retrieval-augmented-generation backend inside PostgreSQL.
//!
//! Module map (one concern each):
//! - `guc`      configuration parameters
//! - `errors`   turning failures into Postgres errors with hints
//! - `ingest`   parse (text, Markdown, HTML) → sentence-aware chunks → stored rows
//! - `embed`    embedding providers: built-in model, Ollama, OpenAI-compatible
//! - `search`   BM25 (pg_search), vectors (pgvector), and their RRF fusion
//! - `queue`    pgmq ingestion queue, the background worker, batch progress
//! - `chat`     rag.ask: grounded answers in a chat session (sessions themselves are sql/chat.sql)
//! - `jsonb_arg` jsonb arguments checked for size and depth before they are parsed
//! - `read`     read-only SPI lookups (no transaction id), hot-standby detection
//! - `tenant`   rag.set_tenant / rag.current_tenant: the tenant of a transaction, for row-level security
//!
//! The schema is `sql/schema.sql`; upgrades are `sql/ragbench--<from>--<to>.sql`. Roles, owners, tenants
//! and privileges are `sql/ragbench--0.3.0--0.4.0.sql`, which a fresh install runs last as well.

use pgrx::prelude::*;

pub mod chat;
pub mod embed;
mod errors;
mod guc;
pub mod ingest;
pub mod interrupts;
pub mod jsonb_arg;
pub mod queue;
mod read;
pub mod search;
mod secrets;
pub mod tenant;

::pgrx::pg_module_magic!();

extension_sql_file!("../sql/schema.sql", name = "schema", bootstrap);
extension_sql_file!("../sql/chat.sql", name = "chat", requires = ["schema"]);
// A fresh install runs the upgrade scripts since 0.3.0 after everything else, so that both paths make
// the same objects with the same statements. The 0.4.0 one (roles, owners, tenants, row-level
// security, privileges) grants on and revokes from every routine of 0.4.0, so it requires each of
// them; the newest one is the `finalize` (pgrx allows one).
extension_sql_file!(
    "../sql/ragbench--0.3.0--0.4.0.sql",
    name = "security",
    requires = [
        "chat",
        "embed_sql",
        "embed_many_sql",
        "reembed_all_sql",
        embed::embed_array,
        embed::embed_arrays,
        ingest::ingest_document,
        ingest::delete_document,
        ingest::reembed,
        queue::upload,
        queue::process_queue,
        queue::retry_failed,
        queue::ingest_document_bytes,
        search::bm25::bm25_search,
        search::vector::vector_search,
        search::hybrid::hybrid_search,
        search::verify::verify,
        chat::ask,
    ]
);
extension_sql_file!("../sql/ragbench--0.4.0--0.5.0.sql", name = "v0_5_0", requires = ["security"]);
extension_sql_file!("../sql/ragbench--0.5.0--0.6.0.sql", name = "v0_6_0", requires = ["v0_5_0"], finalize);

/// The library was loaded by shared_preload_libraries (set in the postmaster, inherited by every
/// process it forks): only then do the launcher, the workers and the embedding service exist.
static PRELOADED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

pub fn preloaded() -> bool {
    PRELOADED.load(std::sync::atomic::Ordering::SeqCst)
}

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    guc::register();
    tenant::register();
    // SAFETY: reading a postmaster global during library load.
    if unsafe { pg_sys::process_shared_preload_libraries_in_progress } {
        PRELOADED.store(true, std::sync::atomic::Ordering::SeqCst);
        queue::launcher::register();
        embed::service::register();
    }
}

#[cfg(any(test, feature = "pg_test"))]
mod tests;

/// Used by `cargo pgrx test`: the test cluster preloads the extension like production does.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    pub fn postgresql_conf_options() -> Vec<&'static str> {
        // No ingestion worker in the test database: the #[pg_test]s drive the queue themselves.
        vec!["shared_preload_libraries = 'ragbench, pg_search'", "rag.worker_databases = 'postgres'"]
    }
}
