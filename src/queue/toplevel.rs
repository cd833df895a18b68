//! One utility statement run by the background worker as a top-level command, the way a client's
//! simple query runs it: for `REINDEX INDEX CONCURRENTLY` and `DROP INDEX CONCURRENTLY`, which refuse
//! to run inside a function or through SPI (PostgreSQL's `PreventInTransactionBlock`).
//!
//! This is the sequence autovacuum and pg_cron's worker mode use: set the statement start time and
//! the activity shown in `pg_stat_activity`, start a transaction, push one snapshot, call
//! `ProcessUtility` with `PROCESS_UTILITY_TOPLEVEL`, and commit the transaction the command leaves
//! open (a concurrent command commits and starts its own transactions on the way). The statement's
//! memory lives in a context of its own, so that it survives those inner commits.
//!
//! Not through pgrx's `BackgroundWorker::transaction` (it pops a snapshot the command has already
//! popped) and never inside another transaction.
//!
//! While the command runs, SIGTERM is PostgreSQL's own `die` handler, so that a shutdown ends a long
//! rebuild at its next interrupt check instead of waiting for it; the worker then exits and the
//! half-built index it leaves behind (`*_ccnew`) is dropped by its next start (see `compact.rs`).
//! Query cancel (`pg_cancel_backend`) and `lock_timeout` end the command with an error, returned here.

use super::subxact::{self, Failure};
use pgrx::pg_sys;
use pgrx::prelude::*;
use std::ffi::CString;
use std::panic::AssertUnwindSafe;

/// Run `sql` (one utility statement, no user input in it) at top level. Must be called outside any
/// transaction. Errors are returned, after the transaction is aborted.
pub fn run(sql: &str) -> Result<(), Failure> {
    let text = CString::new(sql).map_err(|_| Failure {
        code: PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
        message: "a top-level statement contains a NUL byte".into(),
    })?;
    // SAFETY: called from the worker's main thread between transactions; every global changed here is
    // restored before returning, on success and on error.
    unsafe {
        pg_sys::SetCurrentStatementStartTimestamp();
        pg_sys::debug_query_string = text.as_ptr();
        pg_sys::pgstat_report_activity(pg_sys::BackendState::STATE_RUNNING, text.as_ptr());
        let previous_sigterm = pg_sys::pqsignal(SIGTERM, Some(postgres_die));
        pg_sys::StartTransactionCommand();
        let context = pg_sys::AllocSetContextCreateInternal(
            pg_sys::TopMemoryContext,
            c"ragbench top-level statement".as_ptr(),
            pg_sys::ALLOCSET_DEFAULT_MINSIZE as usize,
            pg_sys::ALLOCSET_DEFAULT_INITSIZE as usize,
            pg_sys::ALLOCSET_DEFAULT_MAXSIZE as usize,
        );
        let saved_portal_context = pg_sys::PortalContext;
        pg_sys::PortalContext = context;
        pg_sys::MemoryContextSwitchTo(context);
        let outcome = PgTryBuilder::new(AssertUnwindSafe(|| {
            execute(&text);
            Ok(())
        }))
        .catch_others(|caught| Err(subxact::describe(caught)))
        .execute();
        pg_sys::MemoryContextSwitchTo(pg_sys::TopMemoryContext);
        match &outcome {
            Ok(()) => pg_sys::CommitTransactionCommand(),
            Err(_) => {
                pg_sys::AbortCurrentTransaction();
                pg_sys::QueryCancelPending = 0;
            }
        }
        pg_sys::PortalContext = saved_portal_context;
        pg_sys::MemoryContextSwitchTo(pg_sys::TopMemoryContext);
        pg_sys::MemoryContextDelete(context);
        pg_sys::pqsignal(SIGTERM, previous_sigterm);
        pg_sys::debug_query_string = std::ptr::null();
        pg_sys::pgstat_report_activity(pg_sys::BackendState::STATE_IDLE, std::ptr::null());
        outcome
    }
}

/// Parse the one statement and hand it to ProcessUtility as a top-level utility command.
unsafe fn execute(text: &CString) {
    unsafe {
        let parsed = pg_sys::pg_parse_query(text.as_ptr());
        if parsed.is_null() || (*parsed).length != 1 {
            error!("ragbench: a top-level statement must be exactly one statement");
        }
        let raw = (*(*parsed).elements).ptr_value as *mut pg_sys::RawStmt;
        let mut planned = PgBox::<pg_sys::PlannedStmt>::alloc_node(pg_sys::NodeTag::T_PlannedStmt);
        planned.commandType = pg_sys::CmdType::CMD_UTILITY;
        planned.canSetTag = true;
        planned.utilityStmt = (*raw).stmt;
        planned.stmt_location = (*raw).stmt_location;
        planned.stmt_len = (*raw).stmt_len;
        pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
        pg_sys::ProcessUtility(
            planned.into_pg(),
            text.as_ptr(),
            false,
            pg_sys::ProcessUtilityContext::PROCESS_UTILITY_TOPLEVEL,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            pg_sys::None_Receiver,
            std::ptr::null_mut(),
        );
        // A concurrent command pops the snapshot itself; the early exits of others leave it pushed.
        if pg_sys::ActiveSnapshotSet() {
            pg_sys::PopActiveSnapshot();
        }
    }
}

unsafe extern "C-unwind" {
    /// PostgreSQL's SIGTERM handler for backends (sets ProcDiePending; the next interrupt check exits).
    #[link_name = "die"]
    fn postgres_die(signal: std::ffi::c_int);
}

/// SIGTERM's number on every platform the background worker runs on (Linux, BSD, macOS).
const SIGTERM: i32 = 15;
