//! The ingestion background worker. Registered in `_PG_init` when the library is in
//! `shared_preload_libraries`: `rag.workers_per_database` workers for each database in
//! `rag.worker_databases`, started after recovery finishes (so never on a hot standby), restarted by
//! the postmaster if one dies. Each worker commits after each step of a task (see `task.rs`), waits
//! quietly while the extension is not created in its database, reloads its configuration on SIGHUP
//! and exits cleanly on SIGTERM. It calls Postgres from its main thread only. The first worker of each
//! database also removes expired temporary chat sessions once a minute.

use super::{subxact, task};
use crate::guc;
use crate::ingest;
use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, BgWorkerStartTime, SignalWakeFlags};
use pgrx::prelude::*;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

/// backend_type shown in pg_stat_activity.
pub const WORKER_TYPE: &str = "ragbench worker";

fn databases() -> Vec<String> {
    guc::string(&guc::WORKER_DATABASES)
        .unwrap_or_default()
        .split(',')
        .map(|d| d.trim().to_string())
        .filter(|d| !d.is_empty())
        .collect()
}

/// Register the workers (called from `_PG_init` during shared_preload_libraries processing).
pub fn register() {
    let per_db = guc::WORKERS_PER_DATABASE.get().max(0);
    for (d, db) in databases().iter().enumerate() {
        for w in 0..per_db {
            let slot = d as i32 * per_db + w;
            BackgroundWorkerBuilder::new(&format!("ragbench worker {w} for database {db}"))
                .set_type(WORKER_TYPE)
                .set_library("ragbench")
                .set_function("ragbench_worker_main")
                .set_argument(slot.into_datum())
                .enable_spi_access()
                .set_start_time(BgWorkerStartTime::RecoveryFinished)
                .set_restart_time(Some(Duration::from_secs(5)))
                .load();
        }
    }
}

fn in_transaction<R>(f: impl FnOnce() -> R) -> R {
    BackgroundWorker::transaction(AssertUnwindSafe(f))
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn ragbench_worker_main(arg: pg_sys::Datum) {
    let slot = unsafe { i32::from_polymorphic_datum(arg, false, pg_sys::INT4OID) }.unwrap_or(0);
    let per_db = guc::WORKERS_PER_DATABASE.get().max(1);
    let Some(db) = databases().get((slot / per_db) as usize).cloned() else {
        return;
    };
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    BackgroundWorker::connect_worker_to_spi(Some(&db), None);
    log!("ragbench worker started for database \"{db}\"");

    let mut said_waiting = false;
    let mut last_cleanup = std::time::Instant::now() - Duration::from_secs(3600);
    loop {
        if BackgroundWorker::sigterm_received() {
            break;
        }
        if BackgroundWorker::sighup_received() {
            // SAFETY: the documented way for a background worker to re-read postgresql.conf.
            unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
        }
        let ready = in_transaction(|| {
            Spi::get_one::<bool>("SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'ragbench')")
                .ok()
                .flatten()
                .unwrap_or(false)
        });
        let mut handled = 0;
        if ready {
            said_waiting = false;
            if slot % per_db == 0 && last_cleanup.elapsed() >= Duration::from_secs(60) {
                last_cleanup = std::time::Instant::now();
                in_transaction(|| Spi::run("SELECT rag.cleanup_temporary_sessions()").ok());
            }
            let batch = guc::WORKER_BATCH_SIZE.get().max(1);
            while handled < batch && !BackgroundWorker::sigterm_received() {
                if !process_one() {
                    break;
                }
                handled += 1;
            }
        } else if !said_waiting {
            log!("ragbench worker: extension not created in database \"{db}\" yet; waiting");
            said_waiting = true;
        }
        if handled == 0 {
            let poll = Duration::from_millis(guc::WORKER_POLL_INTERVAL_MS.get().max(10) as u64);
            if !BackgroundWorker::wait_latch(Some(poll)) {
                break;
            }
        }
    }
    log!("ragbench worker for database \"{db}\" stopping");
}

/// Claim and process one message, committing after each step. False when the queue is empty.
fn process_one() -> bool {
    let Some(claimed) = in_transaction(task::claim) else {
        return false;
    };
    // Step 2: parse and chunk (records total_chunks).
    let prepared = in_transaction(|| {
        let r = subxact::run(|| task::chunk(&claimed));
        if let Err(f) = &r {
            task::fail(&claimed, &f.message, f.is_permanent());
        }
        r.ok()
    });
    let Some(mut doc) = prepared else {
        return true;
    };
    // Step 3: embed batch by batch, each batch's progress committed.
    let mut done = 0;
    for range in ingest::embedding_batches(&doc) {
        done += range.len();
        let ok = in_transaction(|| {
            let r = subxact::run(|| {
                if let Err(e) = ingest::embed_range(&mut doc, range.clone()) {
                    crate::embed::report(e);
                }
                task::record_progress(&claimed, done);
            });
            if let Err(f) = &r {
                task::fail(&claimed, &f.message, f.is_permanent());
            }
            r.is_ok()
        });
        if !ok {
            return true;
        }
        if BackgroundWorker::sigterm_received() {
            // Leave the message to be delivered again after its visibility timeout.
            return true;
        }
    }
    // Step 4: store, complete, archive — one transaction.
    in_transaction(|| {
        if let Err(f) = subxact::run(|| task::finish(&claimed, &doc)) {
            task::fail(&claimed, &f.message, f.is_permanent());
        }
    });
    true
}
