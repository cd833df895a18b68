//! One "stop now?" check for every long loop of the extension: query cancel, `statement_timeout`,
//! `pg_terminate_backend` (Postgres' own CHECK_FOR_INTERRUPTS), and in the background worker SIGTERM.
//!
//! pgrx's worker signal handler only sets a flag that `BackgroundWorker::sigterm_received()` reads
//! *and clears*; `stopping()` keeps it, so every place that asks sees it. The check runs on the
//! backend's main thread only (it may raise an ERROR, which unwinds like any Postgres error).

use crate::errors;
use pgrx::bgworkers::BackgroundWorker;
use pgrx::PgSqlErrorCode;
use std::sync::atomic::{AtomicBool, Ordering};

static IN_WORKER: AtomicBool = AtomicBool::new(false);
static STOPPING: AtomicBool = AtomicBool::new(false);

/// Called once by the background worker at start.
pub fn mark_worker() {
    IN_WORKER.store(true, Ordering::SeqCst);
}

/// The worker was asked to stop (SIGTERM). Always false outside the worker.
pub fn stopping() -> bool {
    if !IN_WORKER.load(Ordering::SeqCst) {
        return false;
    }
    if BackgroundWorker::sigterm_received() {
        STOPPING.store(true, Ordering::SeqCst);
    }
    STOPPING.load(Ordering::SeqCst)
}

/// Raise the pending cancel/timeout/termination as an ERROR (or, in the worker, end its work on SIGTERM).
pub fn check() {
    pgrx::check_for_interrupts!();
    if stopping() {
        errors::raise(
            PgSqlErrorCode::ERRCODE_ADMIN_SHUTDOWN,
            "ragbench worker: stopping on SIGTERM in the middle of its work",
            "Its files are delivered again after rag.visibility_timeout.",
        );
    }
}
