//! Run a closure in an internal subtransaction, the way PL/pgSQL runs a BEGIN … EXCEPTION block:
//! an error inside rolls back only the subtransaction and comes back as a value, so one failed file
//! does not abort the rest of a batch.

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
            Err(describe(caught))
        })
        .execute()
    }
}

fn describe(caught: pg_sys::panic::CaughtError) -> Failure {
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
