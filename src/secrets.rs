//! API keys of the HTTP providers, and the caps on what a session may ask of a paid provider.
//!
//! A key is never a setting: PostgreSQL writes every changed setting's value to the server log on
//! reload. A superuser names a file (`rag.embedding_api_key_file`, `rag.llm_api_key_file`) that the
//! server's OS user can read. The key is sent only to the URL a superuser configured with it
//! (`rag.embedding_url`, `rag.llm_url`, both superuser-only): a session that switches the provider
//! (a user setting) still talks to that URL, so it cannot send the key to a server of its choosing,
//! and without a configured URL no key is sent at all. Errors never show the key, the file's path or
//! the URL's credentials or query string.

use crate::{errors, guc};
use pgrx::GucSetting;
use std::ffi::CString;

/// The key for an endpoint whose URL setting is `url` (named `url_name`), read from the file named
/// by `key_file` (named `file_name`); `None` when no key file is configured.
pub fn api_key(
    url: &GucSetting<Option<CString>>,
    key_file: &GucSetting<Option<CString>>,
    url_name: &str,
    file_name: &str,
) -> Option<String> {
    let path = guc::string(key_file)?;
    if guc::string(url).is_none() {
        errors::invalid(
            format!("{file_name} is set but {url_name} is not"),
            format!("An API key is only sent to the URL configured with it: a superuser must set {url_name} too."),
        );
    }
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let key = text.trim().to_string();
            if key.is_empty() {
                errors::invalid(format!("the API key file named by {file_name} is empty"), "A superuser must write the key into it.");
            }
            Some(key)
        }
        Err(e) => errors::external(
            format!("cannot read the API key file named by {file_name} ({})", e.kind()),
            "A superuser must check that the file exists and that the server's OS user can read it.",
        ),
    }
}

/// A session's timeout, capped by `rag.max_http_timeout_ms`.
pub fn capped_timeout_ms(requested: i32) -> u64 {
    requested.clamp(1, guc::MAX_HTTP_TIMEOUT_MS.get().max(1)) as u64
}

/// A session's retry count, capped by `rag.max_http_retries`.
pub fn capped_retries(requested: i32) -> u32 {
    requested.clamp(0, guc::MAX_HTTP_RETRIES.get().max(0)) as u32
}
