//! The ingestion background worker. Started by the launcher (`launcher.rs`) or by
//! `rag.start_workers()` (CREATE EXTENSION) as a dynamic background worker for one slot of one
//! database: `rag.workers_per_database` of them per database with the extension. Each takes up to
//! `rag.worker_batch_size` files at a time and commits after each step (see `process_group` and
//! `task.rs`), exits when the extension is not (or no longer) in its database or the database leaves
//! `rag.worker_databases`, reloads its configuration on SIGHUP and exits cleanly on SIGTERM; the
//! launcher starts it again with a growing delay. It calls Postgres from its main thread only. The
//! first worker (slot 0) of each database also removes expired temporary chat sessions once a minute,
//! checks the BM25 index at start and compacts it when idle (`search/compact.rs`).

use super::{subxact, task};
use crate::errors::SpiOk;
use crate::guc;
use crate::ingest;
use pgrx::bgworkers::{BackgroundWorker, SignalWakeFlags};
use pgrx::prelude::*;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

/// backend_type shown in pg_stat_activity.
pub const WORKER_TYPE: &str = "ragbench worker";

/// Session advisory lock (two-key form) held by the worker of each slot: `(SLOT_LOCK, slot)`. A
/// second worker for the same slot of the same database finds it taken and exits.
const SLOT_LOCK: i32 = 0x7261_6762; // "ragb"

/// Take this slot's lock. A worker started by CREATE EXTENSION retries for a while: the launcher's
/// probe may hold the lock for the moment it takes to see that the extension is not committed yet.
fn claim_slot(slot: i32, patient: bool) -> bool {
    let tries = if patient { 50 } else { 1 };
    for _ in 0..tries {
        let got = in_transaction(|| {
            Spi::get_one_with_args::<bool>("SELECT pg_try_advisory_lock($1, $2)", &[SLOT_LOCK.into(), slot.into()])
                .ok()
                .flatten()
                .unwrap_or(false)
        });
        if got {
            return true;
        }
        if !BackgroundWorker::wait_latch(Some(Duration::from_millis(200))) || crate::interrupts::stopping() {
            return false;
        }
    }
    false
}

/// Wait until the transaction that started this worker (CREATE EXTENSION) has ended.
fn wait_for_creator(xid: u32) {
    if xid == 0 {
        return;
    }
    // SAFETY: a read of the shared proc array.
    while in_transaction(|| unsafe { pg_sys::TransactionIdIsInProgress(pg_sys::TransactionId::from(xid)) }) {
        if !BackgroundWorker::wait_latch(Some(Duration::from_millis(200))) || crate::interrupts::stopping() {
            return;
        }
    }
}

/// A transaction as the connected superuser (the worker's own bookkeeping; files go through `as_worker`).
pub(crate) fn in_transaction<R>(f: impl FnOnce() -> R) -> R {
    BackgroundWorker::transaction(AssertUnwindSafe(f))
}

/// A transaction in which the worker acts as `rag.worker_role` (SET LOCAL ROLE: undone at its end).
fn as_worker<R>(f: impl FnOnce() -> R) -> R {
    in_transaction(|| {
        if let Some(role) = worker_role() {
            Spi::run_with_args("SELECT set_config('role', $1, true)", &[role.as_str().into()]).or_raise("switching to rag.worker_role");
        }
        f()
    })
}

fn worker_role() -> Option<String> {
    guc::string(&guc::WORKER_ROLE).map(|r| r.trim().to_string()).filter(|r| !r.is_empty())
}

/// What the worker may do now (checked as the connected superuser, one query).
#[derive(PartialEq)]
enum Readiness {
    /// The extension is not (or no longer) in this database: the worker exits.
    NoExtension,
    /// The extension is there but rag.worker_role is not: wait.
    NoRole,
    Ready,
}

fn ready_to_work(said_missing_role: &mut bool) -> Readiness {
    let role = worker_role();
    let (extension, role_ok) = in_transaction(|| {
        crate::read::two::<bool, bool>(
            "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'ragbench'),
                    $1::text IS NULL OR EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)",
            &[role.as_deref().into()],
        )
        .ok()
        .flatten()
        .map(|(e, r)| (e.unwrap_or(false), r.unwrap_or(false)))
        .unwrap_or((false, false))
    });
    if !extension {
        return Readiness::NoExtension;
    }
    if !role_ok {
        if !*said_missing_role {
            warning!(
                "ragbench worker: rag.worker_role \"{}\" does not exist; no file is processed until it does",
                role.unwrap_or_default()
            );
            *said_missing_role = true;
        }
        return Readiness::NoRole;
    }
    *said_missing_role = false;
    Readiness::Ready
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn ragbench_worker_main(arg: pg_sys::Datum) {
    let (db_oid, slot) = super::launcher::decode(arg);
    let creator: u32 = BackgroundWorker::get_extra().trim().parse().unwrap_or(0);
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    BackgroundWorker::connect_worker_to_spi_by_oid(Some(db_oid), None);
    crate::interrupts::mark_worker();
    let db = in_transaction(|| Spi::get_one::<String>("SELECT current_database()::text").ok().flatten().unwrap_or_default());
    if !super::launcher::serves(&db) || !claim_slot(slot, creator != 0) {
        debug1!("ragbench worker {slot} for database \"{db}\": not needed (not served, or already running)");
        return;
    }
    wait_for_creator(creator);
    let mut said_missing_role = false;
    if ready_to_work(&mut said_missing_role) == Readiness::NoExtension {
        debug1!("ragbench worker {slot}: no ragbench extension in database \"{db}\"; exiting");
        return;
    }
    log!("ragbench worker {slot} started for database \"{db}\"");

    // Check the BM25 index once at start (a crash restarts every worker) and after each reload.
    let mut check_bm25 = true;
    let mut last_cleanup = std::time::Instant::now() - Duration::from_secs(3600);
    let mut compactor = crate::search::compact::Compactor::default();
    loop {
        if crate::interrupts::stopping() {
            break;
        }
        if BackgroundWorker::sighup_received() {
            // SAFETY: the documented way for a background worker to re-read postgresql.conf.
            unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
            check_bm25 = true;
            if !super::launcher::serves(&db) {
                log!("ragbench worker {slot}: database \"{db}\" is no longer in rag.worker_databases; stopping");
                break;
            }
        }
        let readiness = ready_to_work(&mut said_missing_role);
        let mut handled = 0;
        if readiness == Readiness::Ready {
            if slot == 0 && check_bm25 {
                check_bm25 = false;
                if guc::BM25_AUTO_REPAIR.get() {
                    let damaged = in_transaction(|| {
                        // A failed repair is logged and waits for the next start or reload: never a loop.
                        subxact::run(crate::search::verify::heal_in_worker).unwrap_or_else(|f| {
                            warning!("ragbench worker: checking the BM25 index failed: {}", f.message);
                            false
                        })
                    });
                    if damaged {
                        compactor.repair();
                    }
                }
            }
            if slot == 0 && last_cleanup.elapsed() >= Duration::from_secs(60) {
                last_cleanup = std::time::Instant::now();
                as_worker(|| Spi::run("SELECT rag.cleanup_temporary_sessions()").ok());
            }
            if !crate::interrupts::stopping() && process_group() {
                handled += 1;
            }
            if handled == 0 && slot == 0 && !crate::interrupts::stopping() {
                compactor.tick();
            }
        } else if readiness == Readiness::NoExtension {
            log!("ragbench worker {slot}: the ragbench extension was dropped from database \"{db}\"; stopping");
            break;
        }
        if handled == 0 {
            let poll = Duration::from_millis(guc::WORKER_POLL_INTERVAL_MS.get().max(10) as u64);
            // wait_latch is false on SIGTERM (it reads and clears pgrx's flag) or postmaster death.
            if !BackgroundWorker::wait_latch(Some(poll)) {
                break;
            }
        }
    }
    log!("ragbench worker for database \"{db}\" stopping");
}

/// Claim up to `rag.worker_batch_size` messages and process them together, committing after each
/// step: claim; parse and chunk every file; embed in full batches across files (the claims renewed before
/// each batch and before the store, progress committed after each batch); store every document in one transaction.
/// A file that fails fails alone (subtransactions); an embedding batch the provider refuses is
/// retried file by file, so that only the file it refuses fails. False when the queue is empty.
fn process_group() -> bool {
    let want = guc::WORKER_BATCH_SIZE.get().max(1);
    let t0 = std::time::Instant::now();
    let (read, claimed) = as_worker(|| task::claim_up_to(want));
    if read == 0 {
        return false;
    }
    let t_claim = t0.elapsed();
    // Parse and chunk (records total_chunks); a bad file fails its own task.
    let (claims, mut docs): (Vec<task::Claimed>, Vec<ingest::PreparedDocument>) = as_worker(|| {
        claimed
            .into_iter()
            .filter_map(|c| match subxact::run(|| task::chunk(&c)) {
                Ok(doc) => Some((c, doc)),
                Err(f) => {
                    task::fail(&c, &f.message, f.is_permanent());
                    None
                }
            })
            .unzip()
    });
    let t_chunk = t0.elapsed();
    // Embed in batches that span files.
    let counts: Vec<usize> = docs.iter().map(|d| d.chunks.len()).collect();
    let size = crate::secrets::capped_batch_size();
    let mut done = vec![0usize; docs.len()];
    let mut failed = vec![false; docs.len()];
    for batch in ingest::plan_batches(&counts, size) {
        let spans: Vec<ingest::Span> = batch.into_iter().filter(|s| !failed[s.doc]).collect();
        if spans.is_empty() {
            continue;
        }
        // Renew the claims before every long step (the first renewal also covers the parsing time).
        renew(&claims, &failed);
        as_worker(|| {
            for (part, outcome) in embed_isolating(&mut docs, spans) {
                match outcome {
                    Ok(()) => {
                        for s in &part {
                            done[s.doc] += s.range.len();
                            task::record_done(&claims[s.doc], done[s.doc]);
                        }
                    }
                    Err(f) => {
                        for s in &part {
                            if !failed[s.doc] {
                                failed[s.doc] = true;
                                task::fail(&claims[s.doc], &f.message, f.is_permanent());
                            }
                        }
                    }
                }
            }
        });
        if crate::interrupts::stopping() {
            // Leave the messages to be delivered again after their visibility timeout.
            return true;
        }
    }
    let t_embed = t0.elapsed();
    renew(&claims, &failed);
    // Store, complete, archive: one transaction for the group, all chunks in one statement; if the
    // group is refused, file by file (one subtransaction each) so that only the bad file fails.
    as_worker(|| {
        let items: Vec<(&task::Claimed, &ingest::PreparedDocument)> =
            claims.iter().zip(&docs).zip(&failed).filter(|(_, f)| !**f).map(|((c, d), _)| (c, d)).collect();
        if subxact::run(|| task::finish_group(&items)).is_err() {
            for (c, doc) in items {
                if let Err(f) = subxact::run(|| task::finish(c, doc)) {
                    task::fail(c, &f.message, f.is_permanent());
                }
            }
        }
    });
    let t_store = t0.elapsed();
    debug1!(
        "ragbench worker: {read} messages, {} chunks: claim {:?}, parse+chunk {:?}, embed {:?}, store {:?}",
        counts.iter().sum::<usize>(),
        t_claim,
        t_chunk - t_claim,
        t_embed - t_chunk,
        t_store - t_embed
    );
    true
}

/// Keep the messages of the files still in work invisible for another visibility timeout (committed).
fn renew(claims: &[task::Claimed], failed: &[bool]) {
    let live: Vec<i64> = claims.iter().zip(failed).filter(|(_, f)| !**f).map(|(c, _)| c.msg_id).collect();
    as_worker(|| task::heartbeat(&live));
}

/// Embed one batch in one provider call. If the provider refuses it and the batch holds chunks of
/// several files, embed each file's chunks alone, so that a file the provider refuses (too long, bad
/// input) fails alone instead of taking the other files of its batch with it. Returns each part with
/// its outcome. Runs inside a transaction (subtransactions catch the errors).
fn embed_isolating(
    docs: &mut [ingest::PreparedDocument],
    spans: Vec<ingest::Span>,
) -> Vec<(Vec<ingest::Span>, Result<(), subxact::Failure>)> {
    let embed = |docs: &mut [ingest::PreparedDocument], part: &[ingest::Span]| {
        subxact::run(|| ingest::embed_spans(docs, part).unwrap_or_else(|e| crate::embed::report(e)))
    };
    let whole = embed(docs, &spans);
    let mut files: Vec<usize> = spans.iter().map(|s| s.doc).collect();
    files.dedup();
    if whole.is_ok() || files.len() < 2 {
        return vec![(spans, whole)];
    }
    files
        .into_iter()
        .map(|d| {
            let part: Vec<ingest::Span> = spans.iter().filter(|s| s.doc == d).cloned().collect();
            let outcome = embed(docs, &part);
            (part, outcome)
        })
        .collect()
}
