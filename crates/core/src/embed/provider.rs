//! Shared types for embedding providers: the [`Embedder`] trait implemented by the
//! built-in candle model (`builtin.rs`) and the HTTP clients (`http.rs`), the
//! [`InputKind`] hint (documents vs. search queries) and the [`EmbedError`] enum.
//!
//! This module is plain Rust: no pgrx / Postgres API, no panics on anything that
//! input, files or the network can make fail. Error messages are meant to be shown
//! to a DBA verbatim: they name the provider, the URL (never an API key) and the
//! HTTP status where there is one.

use crate::interrupt::Interrupt;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// What a text is used for. Some models (e.g. nomic-embed-text) embed documents and
/// queries with different task prefixes; models without such a distinction ignore it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputKind {
    Document,
    Query,
}

/// Longest HTTP response body excerpt kept in an [`EmbedError::HttpStatus`].
pub const MAX_BODY_EXCERPT: usize = 300;

/// Everything that can go wrong while loading a model or computing embeddings.
#[derive(Debug)]
pub enum EmbedError {
    /// Model files are missing, unreadable or not a usable model.
    ModelFiles { path: PathBuf, detail: String },
    /// The tokenizer could not be loaded or failed on an input.
    Tokenizer { detail: String },
    /// The model's forward pass failed.
    Inference { detail: String },
    /// Invalid provider configuration (bad URL, zero batch size, ...).
    Config { provider: String, detail: String },
    /// The HTTP request could not be sent or its response not received
    /// (connection refused, DNS, TLS, connection reset, ...).
    HttpTransport {
        provider: String,
        url: String,
        detail: String,
    },
    /// The server answered with a non-success HTTP status.
    HttpStatus {
        provider: String,
        url: String,
        status: u16,
        /// At most [`MAX_BODY_EXCERPT`] characters of the response body.
        body: String,
        /// Parsed `Retry-After` header (already capped), if the server sent one.
        retry_after: Option<Duration>,
    },
    /// The server answered 2xx but the body is not what the API promises.
    MalformedResponse {
        provider: String,
        url: String,
        detail: String,
    },
    /// Number of vectors returned differs from the number of inputs.
    CountMismatch {
        model: String,
        expected: usize,
        got: usize,
    },
    /// Vector dimension differs from the expected / previously seen dimension.
    DimensionMismatch {
        model: String,
        expected: usize,
        got: usize,
    },
    /// The request did not complete within the configured timeout.
    Timeout {
        provider: String,
        url: String,
        timeout: Duration,
    },
    /// The embedding service (`service.rs`) could not be reached or refused the request.
    Service { socket: String, detail: String },
    /// All retries failed; `last` is the final error.
    RetriesExhausted {
        provider: String,
        url: String,
        attempts: u32,
        last: Box<EmbedError>,
    },
}

/// HTTP statuses worth repeating a request for: 408, 429 and 5xx. Shared by the embedding and chat clients.
pub(crate) fn is_retryable_status(status: u16) -> bool {
    status == 408 || status == 429 || (500..=599).contains(&status)
}

impl EmbedError {
    /// Whether repeating the same request may succeed: transport errors, timeouts,
    /// HTTP 408, 429 and 5xx.
    pub fn is_retryable(&self) -> bool {
        match self {
            EmbedError::HttpTransport { .. } | EmbedError::Timeout { .. } => true,
            EmbedError::HttpStatus { status, .. } => is_retryable_status(*status),
            _ => false,
        }
    }

    /// The server-requested delay before retrying (from `Retry-After` on 429/503).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            EmbedError::HttpStatus {
                status: 429 | 503,
                retry_after,
                ..
            } => *retry_after,
            _ => None,
        }
    }

    /// The underlying error, looking through [`EmbedError::RetriesExhausted`].
    pub fn root(&self) -> &EmbedError {
        match self {
            EmbedError::RetriesExhausted { last, .. } => last.root(),
            other => other,
        }
    }
}

impl fmt::Display for EmbedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EmbedError::ModelFiles { path, detail } => write!(
                f,
                "embedding model files at \"{}\" are missing or unusable: {}",
                path.display(),
                detail
            ),
            EmbedError::Tokenizer { detail } => write!(f, "embedding tokenizer error: {detail}"),
            EmbedError::Inference { detail } => {
                write!(f, "embedding model inference failed: {detail}")
            }
            EmbedError::Config { provider, detail } => {
                write!(f, "invalid configuration for embedding provider {provider}: {detail}")
            }
            EmbedError::HttpTransport { provider, url, detail } => write!(
                f,
                "embedding provider {provider}: request to {url} failed: {detail}"
            ),
            EmbedError::HttpStatus { provider, url, status, body, .. } => {
                write!(f, "embedding provider {provider}: {url} answered HTTP {status}")?;
                if let Some(reason) = status_reason(*status) {
                    write!(f, " {reason}")?;
                }
                if !body.is_empty() {
                    write!(f, ": {body}")?;
                }
                Ok(())
            }
            EmbedError::MalformedResponse { provider, url, detail } => write!(
                f,
                "embedding provider {provider}: unexpected response from {url}: {detail}"
            ),
            EmbedError::CountMismatch { model, expected, got } => write!(
                f,
                "embedding model {model} returned {got} embeddings for {expected} inputs"
            ),
            EmbedError::DimensionMismatch { model, expected, got } => write!(
                f,
                "embedding model {model} returned vectors of dimension {got}, expected {expected}"
            ),
            EmbedError::Timeout { provider, url, timeout } => write!(
                f,
                "embedding provider {provider}: request to {url} timed out after {:.1} s",
                timeout.as_secs_f64()
            ),
            EmbedError::Service { socket, detail } => {
                write!(f, "embedding service (socket {socket}): {detail}")
            }
            EmbedError::RetriesExhausted { provider, url, attempts, last } => write!(
                f,
                "embedding provider {provider}: giving up on {url} after {attempts} attempts; last error: {last}"
            ),
        }
    }
}

impl std::error::Error for EmbedError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            EmbedError::RetriesExhausted { last, .. } => Some(last.as_ref()),
            _ => None,
        }
    }
}

/// Reason phrase of common HTTP statuses (also used by `crate::chat::llm`).
pub(crate) fn status_reason(status: u16) -> Option<&'static str> {
    Some(match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        413 => "Payload Too Large",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => return None,
    })
}

/// A text-embedding model. Implementations are cheap to call repeatedly and safe to
/// share between threads; all of them block the calling thread.
pub trait Embedder: Send + Sync {
    /// Stable identity stored with each vector, e.g. `"builtin/all-MiniLM-L6-v2"`,
    /// `"ollama/nomic-embed-text"`, `"openai/text-embedding-3-small"`.
    fn model_id(&self) -> &str;

    /// Vector dimension if known up front (built-in model), or after the first
    /// successful call / from configuration (HTTP providers); `None` otherwise.
    fn dimensions(&self) -> Option<usize>;

    /// One vector per input, in input order. The built-in model returns L2-normalised
    /// vectors; HTTP providers return vectors as the server produced them.
    /// An empty input slice gives an empty result without doing any work.
    /// No cancel hook: see [`Embedder::embed_with`].
    fn embed(&self, texts: &[&str], kind: InputKind) -> Result<Vec<Vec<f32>>, EmbedError> {
        self.embed_with(texts, kind, &crate::interrupt::never)
    }

    /// [`Embedder::embed`], calling `interrupt` on the calling thread between forward passes of
    /// the model (each well under a second) and at most every 100 ms while waiting for a server
    /// or between retries. If `interrupt` unwinds, the call ends there.
    fn embed_with(&self, texts: &[&str], kind: InputKind, interrupt: Interrupt<'_>)
        -> Result<Vec<Vec<f32>>, EmbedError>;

    /// Approximate number of model tokens in `text`, for sizing chunks.
    /// Default: whitespace-separated words * 4/3, rounded up.
    fn count_tokens(&self, text: &str) -> usize {
        approx_token_count(text)
    }
}

/// Whitespace words * 4/3, rounded up.
pub fn approx_token_count(text: &str) -> usize {
    let words = text.split_whitespace().count();
    (words * 4).div_ceil(3)
}

/// Scale `v` to unit L2 norm in place (left as is when its norm is ~0).
pub fn l2_normalize(v: &mut [f32]) {
    let norm = v
        .iter()
        .map(|x| (*x as f64) * (*x as f64))
        .sum::<f64>()
        .sqrt();
    if norm > 1e-12 {
        let inv = (1.0 / norm) as f32;
        v.iter_mut().for_each(|x| *x *= inv);
    }
}

/// Cut `s` (trimmed) to at most `max_chars` characters, ending in "..." if cut.
pub fn excerpt(s: &str, max_chars: usize) -> String {
    let s = s.trim();
    if s.chars().count() <= max_chars {
        return s.to_string();
    }
    let keep = max_chars.saturating_sub(3);
    let mut out: String = s.chars().take(keep).collect();
    out.push_str(&"..."[..max_chars.min(3)]);
    out
}

/// Run `f` with all blockable signals blocked in the calling thread, so that threads
/// spawned inside `f` (reqwest's runtime thread, candle's rayon pool) inherit a mask
/// that blocks every signal. Postgres delivers its signals (query cancel, die,
/// latch wake-ups) to the process; they must be handled by the backend's own thread,
/// never by a helper thread. The caller's mask is restored afterwards.
///
/// Only implemented for Linux on x86_64/aarch64 (where `SIG_BLOCK`=0,
/// `SIG_SETMASK`=2 and `sigset_t` is 128 bytes); elsewhere it just runs `f`.
pub fn with_signals_blocked<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(all(
        target_os = "linux",
        any(target_arch = "x86_64", target_arch = "aarch64")
    ))]
    {
        #[repr(C, align(8))]
        struct SigSet([u64; 16]);
        extern "C" {
            fn sigfillset(set: *mut SigSet) -> i32;
            fn pthread_sigmask(how: i32, set: *const SigSet, old: *mut SigSet) -> i32;
        }
        const SIG_BLOCK: i32 = 0;
        const SIG_SETMASK: i32 = 2;
        struct Restore(SigSet);
        impl Drop for Restore {
            fn drop(&mut self) {
                // SAFETY: restores the mask saved below; pointers are valid for the call.
                unsafe {
                    pthread_sigmask(SIG_SETMASK, &self.0, std::ptr::null_mut());
                }
            }
        }
        let mut all = SigSet([0; 16]);
        let mut old = SigSet([0; 16]);
        // SAFETY: both sets are valid, properly sized and aligned sigset_t buffers.
        let ok =
            unsafe { sigfillset(&mut all) == 0 && pthread_sigmask(SIG_BLOCK, &all, &mut old) == 0 };
        if ok {
            let _restore = Restore(old);
            return f();
        }
        f()
    }
    #[cfg(not(all(
        target_os = "linux",
        any(target_arch = "x86_64", target_arch = "aarch64")
    )))]
    {
        f()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_token_count() {
        assert_eq!(approx_token_count(""), 0);
        assert_eq!(approx_token_count("one"), 2);
        assert_eq!(approx_token_count("one two three"), 4);
        assert_eq!(approx_token_count("  a\tb\nc  d "), 6);
    }

    #[test]
    fn excerpt_is_char_safe() {
        assert_eq!(excerpt("héllo", 10), "héllo");
        assert_eq!(excerpt("héllo wörld", 7), "héll...");
        assert_eq!(excerpt(&"é".repeat(1000), 300).chars().count(), 300);
        assert_eq!(excerpt(" abc ", 3), "abc");
    }

    #[test]
    fn retry_classification() {
        let st = |status| EmbedError::HttpStatus {
            provider: "p".into(),
            url: "u".into(),
            status,
            body: String::new(),
            retry_after: Some(Duration::from_secs(1)),
        };
        assert!(st(500).is_retryable());
        assert!(st(429).is_retryable());
        assert!(!st(401).is_retryable());
        assert!(!st(404).is_retryable());
        assert_eq!(st(429).retry_after(), Some(Duration::from_secs(1)));
        assert_eq!(st(500).retry_after(), None);
        assert!(st(401).to_string().contains("HTTP 401 Unauthorized"));
    }

    #[test]
    fn signals_blocked_runs_closure() {
        assert_eq!(with_signals_blocked(|| 41 + 1), 42);
    }

    #[test]
    fn normalize() {
        let mut v = vec![3.0, 4.0];
        l2_normalize(&mut v);
        assert!((v[0] - 0.6).abs() < 1e-6 && (v[1] - 0.8).abs() < 1e-6);
        let mut z = vec![0.0; 3];
        l2_normalize(&mut z);
        assert_eq!(z, vec![0.0; 3]);
    }
}
