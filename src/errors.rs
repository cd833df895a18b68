//! Error reporting: every user-facing failure is an `ereport(ERROR)` with an SQLSTATE, a message that
//! names the offending value, and a hint that says what to do. Nothing here panics across into Postgres:
//! pgrx turns the raised error into a normal Postgres error at the function boundary.

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::{PgLogLevel, PgSqlErrorCode};

/// Raise an ERROR with SQLSTATE `code`, `message` and `hint`. Never returns.
pub fn raise(code: PgSqlErrorCode, message: impl Into<String>, hint: impl Into<String>) -> ! {
    let hint = hint.into();
    let mut report = ErrorReport::new(code, message.into(), "ragbench");
    if !hint.is_empty() {
        report = report.set_hint(hint);
    }
    report.report(PgLogLevel::ERROR);
    unreachable!("ereport(ERROR) returned")
}

/// A WARNING with a hint (the statement goes on).
pub fn warn(message: impl Into<String>, hint: impl Into<String>) {
    let hint = hint.into();
    let mut report = ErrorReport::new(PgSqlErrorCode::ERRCODE_WARNING, message.into(), "ragbench");
    if !hint.is_empty() {
        report = report.set_hint(hint);
    }
    report.report(PgLogLevel::WARNING);
}

/// The cancel hook passed to the core's long-running functions (`ragbench_core::interrupt`):
/// raises a pending query cancel, statement timeout or termination as its Postgres error (and in
/// the worker, SIGTERM; see `interrupts.rs`). That unwinds through the core, which holds no lock
/// and leaves nothing half-written across the call.
pub fn interrupt() {
    crate::interrupts::check();
}

/// Invalid argument from the caller (SQLSTATE 22023).
pub fn invalid(message: impl Into<String>, hint: impl Into<String>) -> ! {
    raise(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, message, hint)
}

/// A failure of an external system the extension talks to (SQLSTATE 58000).
pub fn external(message: impl Into<String>, hint: impl Into<String>) -> ! {
    raise(PgSqlErrorCode::ERRCODE_SYSTEM_ERROR, message, hint)
}

/// Unwrap an SPI result; an SPI failure here is a bug or a broken installation, reported as such.
pub trait SpiOk<T> {
    fn or_raise(self, what: &str) -> T;
}

impl<T> SpiOk<T> for Result<T, pgrx::spi::SpiError> {
    fn or_raise(self, what: &str) -> T {
        match self {
            Ok(v) => v,
            Err(e) => raise(
                PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
                format!("ragbench: {what} failed: {e}"),
                "Check that the extension is installed completely (ALTER EXTENSION ragbench UPDATE).",
            ),
        }
    }
}

/// `Spi::get_one*` report "no row" as an error; for lookups that may find nothing, make it `None`.
pub trait NoRowIsNone<T> {
    fn no_row_is_none(self) -> Result<Option<T>, pgrx::spi::SpiError>;
}

impl<T> NoRowIsNone<T> for Result<Option<T>, pgrx::spi::SpiError> {
    fn no_row_is_none(self) -> Result<Option<T>, pgrx::spi::SpiError> {
        match self {
            Err(pgrx::spi::SpiError::InvalidPosition) => Ok(None),
            other => other,
        }
    }
}
