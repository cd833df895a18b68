//! Read-only SPI lookups. pgrx's `Spi::get_one*` run their statement as an update, which assigns the
//! transaction an id first: on a hot standby that is an error ("cannot assign TransactionIds during
//! recovery"), and on a primary every search would consume a transaction id. These run as reads.

use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use pgrx::spi::SpiResult;

/// The first column of the first row (`None`: no row, or NULL).
pub fn one<A: FromDatum + IntoDatum>(query: &str, args: &[DatumWithOid<'_>]) -> SpiResult<Option<A>> {
    Spi::connect(|c| {
        let table = c.select(query, Some(1), args)?;
        if table.is_empty() {
            return Ok(None);
        }
        table.first().get_one()
    })
}

/// The first two columns of the first row (`None`: no row).
pub fn two<A: FromDatum + IntoDatum, B: FromDatum + IntoDatum>(
    query: &str,
    args: &[DatumWithOid<'_>],
) -> SpiResult<Option<(Option<A>, Option<B>)>> {
    Spi::connect(|c| {
        let table = c.select(query, Some(1), args)?;
        if table.is_empty() {
            return Ok(None);
        }
        table.first().get_two().map(Some)
    })
}

/// Whether this server is a hot standby (in recovery): nothing may be written, and community
/// pg_search cannot read its BM25 index here.
pub fn on_standby() -> bool {
    // SAFETY: reads shared recovery state; callable from any backend.
    unsafe { pg_sys::RecoveryInProgress() }
}

/// Refuse a function that writes when this server is a hot standby, with PostgreSQL's read-only SQLSTATE
/// (25006), before anything asks for a transaction id.
pub fn require_primary(what: &str) {
    if on_standby() {
        crate::errors::raise(
            PgSqlErrorCode::ERRCODE_READ_ONLY_SQL_TRANSACTION,
            format!("{what} writes, and this server is a hot standby (read-only)"),
            "Run it on the primary.",
        );
    }
}
