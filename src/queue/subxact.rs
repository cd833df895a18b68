//! Run a closure in an internal subtransaction, the way PL/pgSQL runs a BEGIN … EXCEPTION block:
//! an error inside rolls back only the subtransaction and comes back as a value, so one failed file
//! does not abort the rest of a batch.
//!
//! Like PL/pgSQL's `WHEN OTHERS`, it never keeps a cancel: query cancel (`pg_cancel_backend`,
//! `statement_timeout`), lock and idle timeouts and administrator shutdown roll the subtransaction
//! back and are raised again, so they end the whole statement as the caller asked.

use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode;
use std::panic::AssertUnwindSafe;

/// What a caught error said.
#[derive(Debug, Clone)]
pub struct Failure {
    pub code: PgSqlErrorCode,
    pub message: String,
}

impl Failure {
    /// Errors in the input itself (bad file, no text): retrying cannot help.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self.code,
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE
                | PgSqlErrorCode::ERRCODE_DATA_EXCEPTION
                | PgSqlErrorCode::ERRCODE_CHARACTER_NOT_IN_REPERTOIRE
                | PgSqlErrorCode::ERRCODE_UNTRANSLATABLE_CHARACTER
        )
    }
}

pub fn run<R>(f: impl FnOnce() -> R) -> Result<R, Failure> {
    // SAFETY: the standard internal-subtransaction protocol (see PL/pgSQL's exec_stmt_block): remember
    // the memory context and resource owner, begin, and on both paths restore them after
    // release/rollback. Runs on the backend's main thread only.
    unsafe {
        let old_context = pg_sys::CurrentMemoryContext;
        let old_owner = pg_sys::CurrentResourceOwner;
        pg_sys::BeginInternalSubTransaction(std::ptr::null());
        pg_sys::MemoryContextSwitchTo(old_context);
        PgTryBuilder::new(AssertUnwindSafe(|| {
            let r = f();
            pg_sys::ReleaseCurrentSubTransaction();
            pg_sys::MemoryContextSwitchTo(old_context);
            pg_sys::CurrentResourceOwner = old_owner;
            Ok(r)
        }))
        .catch_others(|caught| {
            pg_sys::MemoryContextSwitchTo(old_context);
            pg_sys::RollbackAndReleaseCurrentSubTransaction();
            pg_sys::MemoryContextSwitchTo(old_context);
            pg_sys::CurrentResourceOwner = old_owner;
            if is_interrupt(&caught) {
                caught.rethrow()
            }
            Err(describe(caught))
        })
        .execute()
    }
}

/// Errors that a caller's cancel, timeout or shutdown raised: never turned into a value.
fn is_interrupt(caught: &pg_sys::panic::CaughtError) -> bool {
    use pg_sys::panic::CaughtError;
    let code = match caught {
        CaughtError::PostgresError(r) | CaughtError::ErrorReport(r) | CaughtError::RustPanic { ereport: r, .. } => {
            r.sql_error_code()
        }
    };
    is_interrupt_code(code)
}

pub fn is_interrupt_code(code: PgSqlErrorCode) -> bool {
    matches!(
        code,
        PgSqlErrorCode::ERRCODE_QUERY_CANCELED
            | PgSqlErrorCode::ERRCODE_ADMIN_SHUTDOWN
            | PgSqlErrorCode::ERRCODE_CRASH_SHUTDOWN
            | PgSqlErrorCode::ERRCODE_LOCK_NOT_AVAILABLE
            | PgSqlErrorCode::ERRCODE_IDLE_IN_TRANSACTION_SESSION_TIMEOUT
    )
}

pub(crate) fn describe(caught: pg_sys::panic::CaughtError) -> Failure {
    use pg_sys::panic::CaughtError;
    match caught {
        CaughtError::PostgresError(report)
        | CaughtError::ErrorReport(report)
        | CaughtError::RustPanic { ereport: report, .. } => {
            let mut message = report.message().to_string();
            if let Some(hint) = report.hint() {
                message.push_str(" (hint: ");
                message.push_str(hint);
                message.push(')');
            }
            Failure { code: report.sql_error_code(), message }
        }
    }
}
