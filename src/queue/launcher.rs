//! The launcher: one background worker per server that finds the databases to serve by itself.
//!
//! Registered in `_PG_init` when the library is in `shared_preload_libraries` (and
//! `rag.workers_per_database` > 0), started once recovery has finished (so never on a hot standby). It
//! connects to no database and reads the shared catalog `pg_database` every few seconds. For every
//! database that accepts connections, is not a template and is allowed by `rag.worker_databases`
//! (empty: all), it starts `rag.workers_per_database` ingestion workers (`worker.rs`) as dynamic
//! background workers that the postmaster never restarts by itself: the launcher supervises them.
//!
//! - A worker that finds no `ragbench` extension in its database exits at once. The launcher probes that
//!   database again with a growing delay (5 s, doubling, at most 10 min), so a database in which the
//!   extension is created later, or copied from a template that has it, is found without a restart.
//! - `CREATE EXTENSION ragbench` (and `ALTER EXTENSION ... UPDATE`) call `rag.start_workers()`, which
//!   starts the database's workers at once; they wait for the creating transaction to end.
//! - A worker that dies or is terminated is started again after the same growing delay (reset once a
//!   worker has run for a minute): a database whose worker keeps failing costs one attempt per 10 minutes,
//!   never a loop. A dropped database is forgotten; the launcher never connects to one.
//! - Two workers for the same slot of a database (the launcher's probe and `rag.start_workers()`, or a
//!   restarted launcher) cannot both run: each holds a session advisory lock on its slot.

use crate::guc;
use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, BgWorkerStartTime, DynamicBackgroundWorker, SignalWakeFlags};
use pgrx::prelude::*;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// backend_type of the launcher in pg_stat_activity.
pub const LAUNCHER_TYPE: &str = "ragbench launcher";

/// How often the launcher reads pg_database (new databases, dropped ones, stopped workers).
const SCAN_INTERVAL: Duration = Duration::from_secs(10);
/// First delay before a stopped worker is started again; doubles at each stop, up to MAX_DELAY.
const MIN_DELAY: Duration = Duration::from_secs(5);
const MAX_DELAY: Duration = Duration::from_secs(600);
/// A worker that ran this long was healthy: the next restart waits MIN_DELAY again.
const HEALTHY_RUN: Duration = Duration::from_secs(60);

/// Called from `_PG_init` during shared_preload_libraries processing.
pub fn register() {
    if guc::WORKERS_PER_DATABASE.get() <= 0 {
        return;
    }
    BackgroundWorkerBuilder::new("ragbench launcher")
        .set_type(LAUNCHER_TYPE)
        .set_library("ragbench")
        .set_function("ragbench_launcher_main")
        .enable_spi_access()
        .set_start_time(BgWorkerStartTime::RecoveryFinished)
        .set_restart_time(Some(Duration::from_secs(5)))
        .load();
}

/// Whether `rag.worker_databases` lets workers serve this database (empty or unset: every database).
pub fn serves(database: &str) -> bool {
    let list = guc::string(&guc::WORKER_DATABASES).unwrap_or_default();
    let names: Vec<&str> = list.split(',').map(str::trim).filter(|d| !d.is_empty()).collect();
    names.is_empty() || names.contains(&database)
}

/// The worker's main argument: the database oid and the worker's slot in that database.
pub fn encode(db: pg_sys::Oid, slot: i32) -> pg_sys::Datum {
    pg_sys::Datum::from(((u32::from(db) as usize) << 8) | (slot.clamp(0, 255) as usize))
}

pub fn decode(arg: pg_sys::Datum) -> (pg_sys::Oid, i32) {
    let v = arg.value();
    (pg_sys::Oid::from((v >> 8) as u32), (v & 0xff) as i32)
}

/// Register one ingestion worker. `creator` is the transaction that asked for it (CREATE EXTENSION),
/// which the worker waits for; 0 when the launcher starts it.
fn start_worker(db: pg_sys::Oid, name: &str, slot: i32, creator: u32, notify: bool) -> Option<DynamicBackgroundWorker> {
    let mut b = BackgroundWorkerBuilder::new(&format!("ragbench worker {slot} for database {name}"))
        .set_type(super::worker::WORKER_TYPE)
        .set_library("ragbench")
        .set_function("ragbench_worker_main")
        .set_argument(Some(encode(db, slot)))
        .set_extra(&creator.to_string())
        .enable_spi_access()
        .set_start_time(BgWorkerStartTime::RecoveryFinished)
        .set_restart_time(None);
    if notify {
        // SAFETY: reading this process's pid.
        b = b.set_notify_pid(unsafe { pg_sys::MyProcPid });
    }
    b.load_dynamic().ok()
}

/// Start this database's ingestion workers now (called by CREATE EXTENSION and ALTER EXTENSION UPDATE;
/// rag_admin may call it to bring back workers that were terminated). Returns how many were started.
/// Workers already running keep running: a duplicate exits at once.
#[pg_extern(sql = false)]
fn start_workers() -> i32 {
    if !crate::preloaded() {
        notice!(
            "ragbench is not in shared_preload_libraries: no background worker serves this database; \
             queued files wait for rag.process_queue()"
        );
        return 0;
    }
    // SAFETY: plain reads of backend state.
    if unsafe { pg_sys::RecoveryInProgress() } {
        return 0;
    }
    let per_db = guc::WORKERS_PER_DATABASE.get();
    if per_db <= 0 {
        return 0;
    }
    let (db, name) = current_database();
    if !serves(&name) {
        notice!("rag.worker_databases does not include database \"{name}\": no background worker serves it");
        return 0;
    }
    // SAFETY: reads the current transaction's id (0 when it has none).
    let creator = u32::from(unsafe { pg_sys::GetTopTransactionIdIfAny() });
    // At most once per transaction, and not at all while this database's workers run (outside CREATE
    // EXTENSION): a loop of calls cannot fill max_worker_processes with duplicates.
    // SAFETY: reads the local transaction id of this backend.
    let lxid = unsafe { (*pg_sys::MyProc).vxid.lxid };
    if LAST_CALL.swap(u32::from(lxid), Ordering::SeqCst) == u32::from(lxid) {
        return 0;
    }
    if creator == 0 && running_here() >= i64::from(per_db) {
        return 0;
    }
    let mut started = 0;
    for slot in 0..per_db {
        if start_worker(db, &name, slot, creator, false).is_none() {
            warning!(
                "no free background worker slot for ragbench worker {slot} of database \"{name}\"; \
                 the launcher retries later. Raise max_worker_processes (each database with ragbench \
                 needs rag.workers_per_database of them, plus one for the launcher)."
            );
            break;
        }
        started += 1;
    }
    started
}

/// The local transaction of the last rag.start_workers() call in this backend.
static LAST_CALL: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// Ingestion workers connected to this database now (rag._worker_processes() is SECURITY DEFINER:
/// pg_stat_activity hides other roles' backends from roles without pg_read_all_stats).
fn running_here() -> i64 {
    crate::read::one::<i64>("SELECT n FROM rag._worker_processes()", &[]).ok().flatten().unwrap_or(0)
}

fn current_database() -> (pg_sys::Oid, String) {
    // SAFETY: MyDatabaseId is set in a connected backend; get_database_name pallocs the name.
    unsafe {
        let oid = pg_sys::MyDatabaseId;
        let p = pg_sys::get_database_name(oid);
        let name = if p.is_null() { String::new() } else { std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned() };
        (oid, name)
    }
}

/// Databases a worker may connect to: not templates, accepting connections, not half-dropped.
/// Read from the shared catalog (the launcher has no database).
fn databases() -> Vec<(pg_sys::Oid, String)> {
    BackgroundWorker::transaction(|| unsafe {
        // SAFETY: a catalog heap scan inside a transaction, as the autovacuum launcher does.
        let lock = pg_sys::AccessShareLock as pg_sys::LOCKMODE;
        let rel = pg_sys::table_open(pg_sys::DatabaseRelationId, lock);
        let scan = pg_sys::table_beginscan_catalog(rel, 0, std::ptr::null_mut());
        let mut out = Vec::new();
        loop {
            let tuple = pg_sys::heap_getnext(scan, pg_sys::ScanDirection::ForwardScanDirection);
            if tuple.is_null() {
                break;
            }
            let form = pg_sys::heap_tuple_get_struct::<pg_sys::FormData_pg_database>(tuple);
            if (*form).datistemplate || !(*form).datallowconn || pg_sys::database_is_invalid_form(form) {
                continue;
            }
            let name = std::ffi::CStr::from_ptr((*form).datname.data.as_ptr()).to_string_lossy().into_owned();
            out.push(((*form).oid, name));
        }
        pg_sys::table_endscan(scan);
        pg_sys::table_close(rel, lock);
        out
    })
}

/// One worker slot of one database, as the launcher sees it.
struct Slot {
    running: Option<(DynamicBackgroundWorker, Instant)>,
    next_start: Instant,
    delay: Duration,
}

impl Slot {
    fn new(now: Instant) -> Self {
        Slot { running: None, next_start: now, delay: MIN_DELAY }
    }

    /// Forget a worker that has stopped and schedule the next start.
    fn observe(&mut self, now: Instant) {
        let stopped = match &self.running {
            Some((w, _)) => matches!(w.pid(), Err(pgrx::bgworkers::BackgroundWorkerStatus::Stopped)),
            None => false,
        };
        if !stopped {
            return;
        }
        if let Some((_, since)) = self.running.take() {
            if since.elapsed() >= HEALTHY_RUN {
                self.delay = MIN_DELAY;
            }
            self.next_start = now + self.delay;
            self.delay = (self.delay * 2).min(MAX_DELAY);
        }
    }
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn ragbench_launcher_main(_arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    BackgroundWorker::connect_worker_to_spi(None, None);
    log!("ragbench launcher started");
    let mut slots: HashMap<(pg_sys::Oid, i32), Slot> = HashMap::new();
    let mut said_full = Instant::now() - Duration::from_secs(3600);
    loop {
        if BackgroundWorker::sighup_received() {
            // SAFETY: the documented way for a background worker to re-read postgresql.conf.
            unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
            // A changed rag.worker_databases may allow databases that were skipped: look again now.
            let now = Instant::now();
            for s in slots.values_mut() {
                s.next_start = s.next_start.min(now);
            }
        }
        let now = Instant::now();
        let per_db = guc::WORKERS_PER_DATABASE.get().clamp(0, 255);
        let dbs: Vec<(pg_sys::Oid, String)> = databases().into_iter().filter(|(_, n)| serves(n)).collect();
        slots.retain(|(oid, slot), _| *slot < per_db && dbs.iter().any(|(o, _)| o == oid));
        let mut wake = now + SCAN_INTERVAL;
        for (oid, name) in &dbs {
            for slot in 0..per_db {
                let s = slots.entry((*oid, slot)).or_insert_with(|| Slot::new(now));
                s.observe(now);
                if s.running.is_none() && s.next_start <= now {
                    match start_worker(*oid, name, slot, 0, true) {
                        Some(w) => s.running = Some((w, now)),
                        None => {
                            s.next_start = now + MIN_DELAY;
                            if said_full.elapsed() >= Duration::from_secs(60) {
                                said_full = Instant::now();
                                warning!(
                                    "ragbench launcher: no free background worker slot for database \"{name}\"; \
                                     retrying. Raise max_worker_processes."
                                );
                            }
                        }
                    }
                }
                if s.running.is_none() {
                    wake = wake.min(s.next_start);
                }
            }
        }
        // Stopped workers set this latch (bgw_notify_pid), so the loop also runs when one exits.
        let nap = wake.saturating_duration_since(Instant::now()).max(Duration::from_millis(100));
        if !BackgroundWorker::wait_latch(Some(nap)) {
            break;
        }
    }
    log!("ragbench launcher stopping");
}
