//! The embedding service's background worker: one per PostgreSQL server, registered in `_PG_init`
//! when the library is preloaded, started once the server is consistent (so on a hot standby too, where
//! searches still embed their queries). It serves `ragbench_core::embed::service` on the Unix socket
//! [`SOCKET`] in the data directory and loads the built-in model from the server's `rag.model_dir` on
//! the first request. Backends reach it through `ServiceEmbedder` when `rag.embedding_mode` is
//! `service` (the default), so the model is in memory once per server instead of once per backend.
//!
//! Its threads never call Postgres: the main thread waits on its latch for SIGTERM, postmaster death
//! and SIGHUP, and the server's threads are started with every signal blocked. It exits with status 1
//! so that the postmaster starts it again after 5 s if it was terminated; callers wait for it within
//! their `rag.embedding_timeout_ms`, and can be cancelled while they wait.

use crate::guc;
use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, BgWorkerStartTime, SignalWakeFlags};
use pgrx::prelude::*;
use ragbench_core::embed::provider::{with_signals_blocked, Embedder};
use ragbench_core::embed::service::{serve_models, ServiceEmbedder};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// backend_type of the service in pg_stat_activity.
pub const SERVICE_TYPE: &str = "ragbench embedding service";

/// The socket, relative to the data directory (every server process runs with the data directory
/// as its working directory, and a relative path keeps clear of the 107-byte limit on socket paths).
pub const SOCKET: &str = "ragbench_embed.sock";

pub fn register() {
    BackgroundWorkerBuilder::new(SERVICE_TYPE)
        .set_type(SERVICE_TYPE)
        .set_library("ragbench")
        .set_function("ragbench_embedding_service_main")
        .enable_spi_access()
        .set_start_time(BgWorkerStartTime::ConsistentState)
        .set_restart_time(Some(Duration::from_secs(5)))
        .load();
}

/// Whether this backend embeds with the built-in model through the service: `rag.embedding_mode` checked
/// (its values are spelled out in errors rather than an enum GUC, like the provider setting), and the
/// library preloaded (without it there is no service, and the backend path is used).
pub fn in_use() -> bool {
    let mode = guc::string(&guc::EMBEDDING_MODE).unwrap_or_else(|| "service".into()).to_lowercase();
    if mode != "service" && mode != "backend" {
        crate::errors::invalid(
            format!("unknown rag.embedding_mode '{mode}'"),
            "Set rag.embedding_mode to service (one model per server) or backend (one per backend).",
        );
    }
    mode == "service" && crate::preloaded()
}

/// The client end, for the built-in provider.
pub fn client(timeout: Duration, batch: usize, quality: bool) -> Arc<dyn Embedder> {
    use ragbench_core::embed::{builtin, mpnet};
    // The model's tokenizer counts tokens for chunking in this backend, as the backend path does.
    if quality {
        let (id, dims) = (mpnet::MPNET_MODEL_ID, mpnet::MPNET_DIMENSIONS);
        let client = ServiceEmbedder::for_model(SOCKET, timeout, batch, 1, id, dims);
        return Arc::new(client.with_tokenizer(super::mpnet_dir(), mpnet::MPNET_MAX_TOKENS));
    }
    Arc::new(ServiceEmbedder::new(SOCKET, timeout, batch).with_tokenizer(super::model_dir(), builtin::BUILTIN_MAX_TOKENS))
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn ragbench_embedding_service_main(_arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    // No database: this only makes the service visible in pg_stat_activity (and reachable by
    // pg_terminate_backend), like the launcher.
    BackgroundWorker::connect_worker_to_spi(None, None);
    let model_dir: PathBuf = super::model_dir();
    // An unknown value is not a reason to stop (the postmaster would restart the service in a loop).
    let choice = super::parse_runtime(&super::runtime_setting()).unwrap_or_else(|other| {
        warning!("ragbench embedding service: unknown rag.builtin_runtime '{other}', using auto");
        None
    });
    let (runtime, library) = super::resolve_runtime(choice, &model_dir);
    // The model runs on a thread of its own. glibc would give that thread a malloc arena of its own, with a
    // bounded heap, so the forward pass's large blocks could come and go as fresh mmaps; one arena for the
    // process, as a backend running the model on its main thread has, keeps freed blocks for reuse.
    unsafe extern "C" {
        fn mallopt(param: i32, value: i32) -> i32;
    }
    const M_ARENA_MAX: i32 = -8;
    // SAFETY: a glibc tuning call made before this process starts any thread.
    unsafe { mallopt(M_ARENA_MAX, 1) };
    let _ = std::fs::remove_file(SOCKET); // left by a service that did not exit cleanly
    let listener = match UnixListener::bind(SOCKET) {
        Ok(l) => l,
        Err(e) => {
            // Not a loop: the postmaster waits 5 s between attempts, and callers get a clear error.
            warning!("ragbench embedding service: cannot listen on {SOCKET} in the data directory: {e}");
            unsafe { pg_sys::proc_exit(1) };
        }
    };
    let _ = std::fs::set_permissions(SOCKET, std::fs::Permissions::from_mode(0o600));
    let dir = model_dir.clone();
    // One model thread per core this process may use (at most 4): two forward passes side by side use two
    // cores better than one pass over a small batch of short queries (and ONNX gets a session per thread).
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).clamp(1, 4);
    // Model 0: all-MiniLM-L6-v2 (the default); model 1: all-mpnet-base-v2 (the quality option). Each is
    // loaded on its first request, so a server that never asks for all-mpnet-base-v2 never holds it.
    let minilm: ragbench_core::embed::service::Loader =
        Box::new(move || super::load_builtin(&dir, runtime, &library, threads).map_err(|e| e.to_string()));
    // Paths are computed here: the loaders run on a model thread, which never calls Postgres.
    let mpnet_dir = super::mpnet_dir();
    let mpnet: ragbench_core::embed::service::Loader =
        Box::new(move || super::load_mpnet(&mpnet_dir).map_err(|e| e.to_string()));
    // Threads started with every signal blocked: Postgres' handlers run on this thread only.
    let server = match with_signals_blocked(|| serve_models(listener, vec![minilm, mpnet], threads)) {
        Ok(s) => s,
        Err(e) => {
            warning!("ragbench embedding service: cannot start its threads: {e}");
            unsafe { pg_sys::proc_exit(1) };
        }
    };
    log!("ragbench embedding service listening (model: {}, runtime: {runtime:?})", model_dir.display());
    while BackgroundWorker::wait_latch(Some(Duration::from_secs(1))) {
        if BackgroundWorker::sighup_received() {
            // SAFETY: the documented way for a background worker to re-read postgresql.conf.
            unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
        }
    }
    let _ = std::fs::remove_file(SOCKET); // new callers wait for the next service from here on
    server.stop();
    log!("ragbench embedding service stopping");
    // Status 1: if this was a pg_terminate_backend, the postmaster starts the service again.
    unsafe { pg_sys::proc_exit(1) };
}
