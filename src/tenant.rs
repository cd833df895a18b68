//! Tenants: one role (an application) keeps its end users' data apart.
//!
//! The application calls `rag.set_tenant('acme')` at the start of a transaction; until the transaction
//! ends, row-level security (sql/ragbench--0.3.0--0.4.0.sql) shows and writes only rows of the current role
//! with that tenant. The tenant lives in this backend's memory, written only by `rag.set_tenant` and cleared
//! by every commit, abort or prepare: it is not a setting, so no `SET`, placeholder variable, connection
//! option or function argument can forge it, and a transaction that has a tenant cannot switch to another
//! (SQL injected later in the same transaction stays in the same tenant). A tenant only ever partitions the
//! caller's own rows: no tenant name reaches another role's data.

use crate::errors;
use pgrx::prelude::*;
use std::sync::Mutex;

/// Longest tenant name, in bytes.
const MAX_TENANT_BYTES: usize = 256;

static TENANT: Mutex<Option<String>> = Mutex::new(None);

fn current() -> Option<String> {
    TENANT.lock().ok().and_then(|g| g.clone())
}

/// The tenant of this transaction, '' when none (SQL: `rag.current_tenant()`, created in the SQL file).
#[pg_extern(sql = false)]
fn current_tenant() -> String {
    current().unwrap_or_default()
}

/// Act for `tenant` until this transaction ends. Returns the tenant.
#[pg_extern(sql = false)]
fn set_tenant(tenant: Option<&str>) -> String {
    let Some(tenant) = tenant else {
        errors::invalid("tenant must not be NULL", "Pass the tenant's name, for example its customer id.");
    };
    if tenant.is_empty() || tenant.len() > MAX_TENANT_BYTES || tenant.chars().any(char::is_control) {
        errors::invalid(
            format!("tenant must be 1 to {MAX_TENANT_BYTES} bytes without control characters (got {} bytes)", tenant.len()),
            "Use a stable identifier such as the customer's id.",
        );
    }
    if let Some(set) = current() {
        if set != tenant {
            errors::raise(
                PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
                "this transaction already acts for another tenant; a transaction serves one tenant".to_string(),
                "Commit or roll back, then call rag.set_tenant() first in the next transaction.",
            );
        }
        return set;
    }
    // SAFETY: plain read of the transaction state from the backend's main thread.
    if !unsafe { pg_sys::IsTransactionBlock() } {
        warning!("rag.set_tenant() outside a transaction block lasts for this statement only; call it after BEGIN");
    }
    if let Ok(mut g) = TENANT.lock() {
        *g = Some(tenant.to_string());
    }
    tenant.to_string()
}

/// Clears the tenant at the end of every top-level transaction. Never raises: it runs during commit/abort.
#[pg_guard]
unsafe extern "C-unwind" fn at_transaction_end(event: pg_sys::XactEvent::Type, _arg: *mut std::ffi::c_void) {
    use pg_sys::XactEvent::*;
    if matches!(event, XACT_EVENT_COMMIT | XACT_EVENT_ABORT | XACT_EVENT_PREPARE | XACT_EVENT_PARALLEL_COMMIT | XACT_EVENT_PARALLEL_ABORT) {
        if let Ok(mut g) = TENANT.lock() {
            *g = None;
        }
    }
}

/// Called once from `_PG_init`.
pub fn register() {
    // SAFETY: registering a plain C callback with no argument during library load.
    unsafe { pg_sys::RegisterXactCallback(Some(at_transaction_end), std::ptr::null_mut()) };
}
