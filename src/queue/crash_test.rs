//! A test-only way to make a file kill the process that processes it, so that the end-to-end tests
//! can show that such a file is counted, given up on after `rag.max_attempts` deaths, and does not
//! make the server restart forever. `rag.debug_abort_on_file` is superuser-only and empty by default.

use crate::guc;
use pgrx::prelude::*;

/// Abort the process (as a crash would) when the file's name is the one the setting names.
pub fn maybe_abort(file_name: &str) {
    if let Some(target) = guc::string(&guc::DEBUG_ABORT_ON_FILE) {
        if target == file_name.trim() {
            log!("ragbench: rag.debug_abort_on_file = '{target}': aborting the process on purpose");
            std::process::abort();
        }
    }
}
