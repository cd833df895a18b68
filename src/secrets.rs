//! API keys of the HTTP providers, and the caps on what a session may ask of a paid provider.
//!
//! A key is never a setting: PostgreSQL writes every changed setting's value to the server log on
//! reload. A superuser names a file (`rag.embedding_api_key_file`, `rag.llm_api_key_file`) that the
//! server's OS user can read. The key is sent only to the URL a superuser configured with it
//! (`rag.embedding_url`, `rag.llm_url`, both superuser-only): a session that switches the provider
//! (a user setting) still talks to that URL, so it cannot send the key to a server of its choosing,
//! and without a configured URL no key is sent at all. Errors never show the key, the file's path or
//! the URL's credentials or query string.
//!
//! The administrator also caps what any session may ask for: timeouts, retries and batch sizes, and which
//! provider/model pairs it may use (`rag.allowed_embedding_models`, `rag.allowed_llm_models`).

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

/// A session's embedding batch size, capped by `rag.max_embedding_batch_size`.
pub fn capped_batch_size() -> usize {
    guc::EMBEDDING_BATCH_SIZE.get().clamp(1, guc::MAX_EMBEDDING_BATCH_SIZE.get().max(1)) as usize
}

/// Whether `provider/model` matches an entry of a comma-separated allow-list (`provider/model`,
/// `provider/*`, or `*`). An empty list allows everything. Providers compare case-insensitively.
pub fn model_allowed(list: &str, provider: &str, model: &str) -> bool {
    let entries: Vec<&str> = list.split(',').map(str::trim).filter(|e| !e.is_empty()).collect();
    entries.is_empty()
        || entries.iter().any(|e| {
            let (p, m) = e.split_once('/').unwrap_or((e, "*"));
            (p == "*" || p.eq_ignore_ascii_case(provider)) && (m == "*" || m == model)
        })
}

/// Refuse a provider/model pair that the allow-list setting `setting` does not contain (SQLSTATE 42501).
pub fn require_allowed(list: &GucSetting<Option<CString>>, setting: &str, provider: &str, model: &str) {
    let Some(allowed) = guc::string(list) else { return };
    if !model_allowed(&allowed, provider, model) {
        errors::raise(
            pgrx::PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("model '{provider}/{model}' is not allowed by {setting}"),
            format!("The administrator allows: {allowed}."),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::model_allowed;

    #[test]
    fn allow_lists_match_pairs_and_wildcards() {
        assert!(model_allowed("", "ollama", "anything"));
        assert!(model_allowed("builtin/all-MiniLM-L6-v2, ollama/*", "ollama", "nomic-embed-text"));
        assert!(model_allowed("builtin/all-MiniLM-L6-v2", "builtin", "all-MiniLM-L6-v2"));
        assert!(model_allowed("OpenAI/text-embedding-3-small", "openai", "text-embedding-3-small"));
        assert!(!model_allowed("builtin/all-MiniLM-L6-v2", "openai", "text-embedding-3-small"));
        assert!(!model_allowed("openai/text-embedding-3-small", "openai", "text-embedding-3-large"));
        assert!(model_allowed("*", "x", "y"));
        assert!(model_allowed("openai", "openai", "any"));
    }
}
