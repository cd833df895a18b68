//! HTTP embedding providers: Ollama (`POST {base}/api/embed`) and OpenAI-compatible
//! servers (`POST {base}/v1/embeddings`), using a blocking reqwest client.
//!
//! Both split inputs into batches of `batch_size`, check that every batch returns one
//! vector per input with a consistent dimension (equal to `HttpConfig::dimensions`
//! when set), and retry transient failures:
//!
//! * connect/transport errors, timeouts, HTTP 408, 429 and 5xx are retried up to
//!   `max_retries` times with exponential backoff (200 ms * 2^n, capped at 10 s, plus
//!   up to 20 % jitter);
//! * a 429/503 carrying `Retry-After` (seconds or HTTP-date, capped at 60 s) waits
//!   as told and does not count as a failed attempt; all waiting in one request is
//!   bounded by [`MAX_TOTAL_WAIT`] so a server can't keep us looping;
//! * other 4xx fail immediately.
//!
//! Error messages name the provider, the URL (without any userinfo) and the HTTP
//! status; the API key is sent only in the `Authorization` header and is scrubbed
//! from anything echoed back by the server.
//!
//! Cancel: a request runs on a helper thread while the calling thread waits for it in
//! steps of at most [`POLL_STEP`], calling the caller's cancel hook between steps; waits
//! between attempts sleep in the same steps. If the hook unwinds (the query was
//! cancelled), the helper thread is abandoned: it never calls back and ends by itself at
//! the request timeout. Tests replace the waits with a recorder
//! ([`OllamaEmbedder::with_sleeper`]).
//!
//! Threads: reqwest's blocking client runs its own I/O thread (created in `new`,
//! with every signal blocked so that Postgres signals stay on the backend's thread).
//! It never calls back into this module or into Postgres. Create embedders in the
//! backend that uses them (not in the postmaster before fork).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use serde_json::json;

use super::provider::{
    excerpt, with_signals_blocked, EmbedError, Embedder, InputKind, MAX_BODY_EXCERPT,
};
use crate::interrupt::{self, Interrupt, POLL_STEP};
use std::sync::mpsc::RecvTimeoutError;

/// Longest `Retry-After` honoured.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
/// Longest total time spent waiting between attempts of one request.
pub const MAX_TOTAL_WAIT: Duration = Duration::from_secs(120);
/// Most `Retry-After` waits (which don't count toward `max_retries`) for one request.
const MAX_RETRY_AFTER_WAITS: u32 = 20;
const BACKOFF_BASE: Duration = Duration::from_millis(200);
const BACKOFF_CAP: Duration = Duration::from_secs(10);
/// Longest response body accepted (a batch of 256 x 3072-d vectors is ~20 MB of JSON).
const MAX_RESPONSE_BYTES: u64 = 256 * 1024 * 1024;

/// Configuration of an HTTP embedding provider.
#[derive(Clone)]
pub struct HttpConfig {
    /// e.g. `http://localhost:11434` (Ollama) or `https://api.openai.com` / `.../v1`.
    pub base_url: String,
    /// Model name as the server knows it, e.g. `nomic-embed-text`, `text-embedding-3-small`.
    pub model: String,
    /// Sent as `Authorization: Bearer ...` when set. Never appears in error messages.
    pub api_key: Option<String>,
    /// Timeout of one HTTP request (connect + send + receive).
    pub timeout: Duration,
    /// Retries after the first attempt for transient failures.
    pub max_retries: u32,
    /// Most inputs per HTTP request (>= 1).
    pub batch_size: usize,
    /// Expected vector dimension; a different one is an error. `None`: learned from
    /// the first response, later responses must agree.
    pub dimensions: Option<usize>,
}

impl HttpConfig {
    /// Defaults: no key, 30 s timeout, 3 retries, batches of 32, dimension learned.
    pub fn new(base_url: impl Into<String>, model: impl Into<String>) -> Self {
        HttpConfig {
            base_url: base_url.into(),
            model: model.into(),
            api_key: None,
            timeout: Duration::from_secs(30),
            max_retries: 3,
            batch_size: 32,
            dimensions: None,
        }
    }
}

impl std::fmt::Debug for HttpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpConfig")
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("timeout", &self.timeout)
            .field("max_retries", &self.max_retries)
            .field("batch_size", &self.batch_size)
            .field("dimensions", &self.dimensions)
            .finish()
    }
}

pub(crate) type Sleeper = Arc<dyn Fn(Duration) + Send + Sync>;

/// What both providers share: client, endpoint, retry loop, checks. Also used by the chat
/// clients (`crate::chat::llm`), which map its [`EmbedError`]s to their own error type.
pub(crate) struct HttpCore {
    provider: &'static str,
    pub(crate) model_id: String,
    client: reqwest::blocking::Client,
    /// Endpoint actually requested.
    url: reqwest::Url,
    /// Endpoint as shown in messages (userinfo removed).
    pub(crate) display_url: String,
    api_key: Option<String>,
    timeout: Duration,
    max_retries: u32,
    batch_size: usize,
    expected_dims: Option<usize>,
    /// Dimension seen in the first response (0 = none yet).
    seen_dims: AtomicUsize,
    /// Replaces the waits between attempts (tests); `None`: sleep in short steps, calling
    /// the cancel hook.
    pub(crate) sleeper: Option<Sleeper>,
}

/// A copy for the helper thread that runs one request.
impl Clone for HttpCore {
    fn clone(&self) -> Self {
        HttpCore {
            provider: self.provider,
            model_id: self.model_id.clone(),
            client: self.client.clone(),
            url: self.url.clone(),
            display_url: self.display_url.clone(),
            api_key: self.api_key.clone(),
            timeout: self.timeout,
            max_retries: self.max_retries,
            batch_size: self.batch_size,
            expected_dims: self.expected_dims,
            seen_dims: AtomicUsize::new(self.seen_dims.load(Ordering::Relaxed)),
            sleeper: self.sleeper.clone(),
        }
    }
}

impl HttpCore {
    pub(crate) fn new(
        provider: &'static str,
        cfg: HttpConfig,
        path: &str,
    ) -> Result<Self, EmbedError> {
        let config_err = |detail: String| EmbedError::Config {
            provider: provider.to_string(),
            detail,
        };
        if cfg.model.trim().is_empty() {
            return Err(config_err("model name is empty".into()));
        }
        if cfg.batch_size == 0 {
            return Err(config_err("batch_size must be at least 1".into()));
        }
        if cfg.timeout.is_zero() {
            return Err(config_err("timeout must be positive".into()));
        }
        if cfg.dimensions == Some(0) {
            return Err(config_err("dimensions must be positive".into()));
        }
        let base = cfg.base_url.trim().trim_end_matches('/');
        match reqwest::Url::parse(base) {
            Ok(u) if u.host_str().is_some_and(|h| !h.is_empty()) => {}
            Ok(_) => {
                return Err(config_err(format!(
                    "base URL \"{}\" has no host",
                    strip_userinfo_str(base)
                )))
            }
            Err(e) => {
                return Err(config_err(format!(
                    "invalid base URL \"{}\": {e}",
                    strip_userinfo_str(base)
                )))
            }
        }
        let full = format!("{base}{path}");
        let url = reqwest::Url::parse(&full).map_err(|e| {
            config_err(format!(
                "invalid base URL \"{}\": {e}",
                strip_userinfo_str(base)
            ))
        })?;
        if url.scheme() != "http" && url.scheme() != "https" {
            return Err(config_err(format!(
                "base URL \"{}\" must start with http:// or https://",
                strip_userinfo_str(base)
            )));
        }
        let mut shown = url.clone();
        let _ = shown.set_username("");
        let _ = shown.set_password(None);
        let display_url = shown.to_string();
        let api_key = cfg.api_key.filter(|k| !k.is_empty());
        if let Some(k) = &api_key {
            if reqwest::header::HeaderValue::from_str(&format!("Bearer {k}")).is_err() {
                return Err(config_err(
                    "API key contains characters not allowed in an HTTP header".into(),
                ));
            }
        }

        let timeout = cfg.timeout;
        let client = with_signals_blocked(|| {
            reqwest::blocking::Client::builder()
                .timeout(timeout)
                .connect_timeout(timeout.min(Duration::from_secs(10)))
                .user_agent(concat!("ragbench/", env!("CARGO_PKG_VERSION")))
                .build()
        })
        .map_err(|e| config_err(format!("cannot create HTTP client: {}", error_chain(&e))))?;

        Ok(HttpCore {
            provider,
            model_id: format!("{provider}/{}", cfg.model),
            client,
            url,
            display_url,
            api_key,
            timeout,
            max_retries: cfg.max_retries,
            batch_size: cfg.batch_size,
            expected_dims: cfg.dimensions,
            seen_dims: AtomicUsize::new(0),
            sleeper: None,
        })
    }

    fn dimensions(&self) -> Option<usize> {
        self.expected_dims
            .or(match self.seen_dims.load(Ordering::Relaxed) {
                0 => None,
                d => Some(d),
            })
    }

    /// Remove the API key from text that came from the server or the HTTP stack.
    fn scrub(&self, s: String) -> String {
        match &self.api_key {
            Some(k) if k.len() >= 4 && s.contains(k.as_str()) => {
                s.replace(k.as_str(), "[redacted]")
            }
            _ => s,
        }
    }

    fn map_reqwest(&self, e: reqwest::Error) -> EmbedError {
        if e.is_timeout() {
            EmbedError::Timeout {
                provider: self.provider.to_string(),
                url: self.display_url.clone(),
                timeout: self.timeout,
            }
        } else {
            self.transport(error_chain(&e.without_url()))
        }
    }

    pub(crate) fn malformed(&self, detail: impl Into<String>) -> EmbedError {
        EmbedError::MalformedResponse {
            provider: self.provider.to_string(),
            url: self.display_url.clone(),
            detail: self.scrub(detail.into()),
        }
    }

    /// One POST; any non-2xx is an `HttpStatus` error.
    fn post_once(&self, body: &serde_json::Value) -> Result<Vec<u8>, EmbedError> {
        let mut req = self.client.post(self.url.clone()).json(body);
        if let Some(k) = &self.api_key {
            req = req.bearer_auth(k);
        }
        let resp = req.send().map_err(|e| self.map_reqwest(e))?;
        let status = resp.status();
        if !status.is_success() {
            let retry_after = resp
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, SystemTime::now()));
            let text = self
                .read_body(resp, 64 * 1024)
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            return Err(EmbedError::HttpStatus {
                provider: self.provider.to_string(),
                url: self.display_url.clone(),
                status: status.as_u16(),
                body: excerpt(&self.scrub(text), MAX_BODY_EXCERPT),
                retry_after,
            });
        }
        self.read_body(resp, MAX_RESPONSE_BYTES)
    }

    /// [`HttpCore::post_once`] on a helper thread, waited for in steps of at most
    /// [`POLL_STEP`] with `interrupt` called before each step. If `interrupt` unwinds, the
    /// helper thread is abandoned: it holds its own copy of the client and the body, never
    /// calls back, and ends by itself at the request timeout.
    fn post_once_polled(
        &self,
        body: &serde_json::Value,
        interrupt: Interrupt<'_>,
    ) -> Result<Vec<u8>, EmbedError> {
        let (tx, rx) = std::sync::mpsc::channel();
        let core = self.clone();
        let body = body.clone();
        // The thread must not take the backend's signals (it inherits this mask).
        let spawned = with_signals_blocked(|| {
            std::thread::Builder::new()
                .name("ragbench-http".into())
                .spawn(move || {
                    let _ = tx.send(core.post_once(&body));
                })
        });
        if let Err(e) = spawned {
            return Err(self.transport(format!("cannot start a thread for the request: {e}")));
        }
        loop {
            interrupt();
            match rx.recv_timeout(POLL_STEP) {
                Ok(result) => return result,
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(self.transport("the request thread ended without a result".into()))
                }
            }
        }
    }

    /// Reads at most `limit` bytes of a response body.
    fn read_body(
        &self,
        resp: reqwest::blocking::Response,
        limit: u64,
    ) -> Result<Vec<u8>, EmbedError> {
        use std::io::Read;
        let mut buf = Vec::new();
        if let Err(e) = resp.take(limit + 1).read_to_end(&mut buf) {
            // reqwest's blocking reader wraps its own errors in io::Error.
            if e.get_ref()
                .is_some_and(|inner| inner.is::<reqwest::Error>())
            {
                if let Some(Ok(re)) = e
                    .into_inner()
                    .map(|inner| inner.downcast::<reqwest::Error>())
                {
                    return Err(self.map_reqwest(*re));
                }
                return Err(self.transport("error reading response body".into()));
            }
            if e.kind() == std::io::ErrorKind::TimedOut {
                return Err(EmbedError::Timeout {
                    provider: self.provider.to_string(),
                    url: self.display_url.clone(),
                    timeout: self.timeout,
                });
            }
            return Err(self.transport(format!("error reading response body: {}", error_chain(&e))));
        }
        if buf.len() as u64 > limit {
            return Err(self.malformed(format!("response body larger than {limit} bytes")));
        }
        Ok(buf)
    }

    fn transport(&self, detail: String) -> EmbedError {
        EmbedError::HttpTransport {
            provider: self.provider.to_string(),
            url: self.display_url.clone(),
            detail: self.scrub(detail),
        }
    }

    /// POST with retries; parses the 2xx body as JSON of type `T`. `interrupt` is called at
    /// least every [`POLL_STEP`] while waiting for the server or between attempts.
    pub(crate) fn post<T: for<'de> Deserialize<'de>>(
        &self,
        body: &serde_json::Value,
        interrupt: Interrupt<'_>,
    ) -> Result<T, EmbedError> {
        let mut attempts: u32 = 0;
        let mut failures: u32 = 0;
        let mut retry_after_waits: u32 = 0;
        let mut waited = Duration::ZERO;
        loop {
            attempts += 1;
            let err = match self.post_once_polled(body, interrupt) {
                Ok(bytes) => {
                    return serde_json::from_slice::<T>(&bytes).map_err(|e| {
                        let start =
                            String::from_utf8_lossy(&bytes[..bytes.len().min(400)]).into_owned();
                        self.malformed(format!(
                            "invalid JSON ({e}); body starts with: {}",
                            excerpt(&start, 200)
                        ))
                    })
                }
                Err(e) => e,
            };
            if !err.is_retryable() {
                return Err(err);
            }
            let delay = match err.retry_after() {
                Some(ra) if retry_after_waits < MAX_RETRY_AFTER_WAITS => {
                    retry_after_waits += 1;
                    ra
                }
                _ => {
                    failures += 1;
                    if failures > self.max_retries {
                        return Err(self.give_up(attempts, err));
                    }
                    backoff(failures)
                }
            };
            if waited + delay > MAX_TOTAL_WAIT {
                return Err(self.give_up(attempts, err));
            }
            match &self.sleeper {
                Some(sleep) => {
                    sleep(delay);
                    interrupt();
                }
                None => interrupt::sleep(delay, interrupt),
            }
            waited += delay;
        }
    }

    fn give_up(&self, attempts: u32, last: EmbedError) -> EmbedError {
        if attempts <= 1 {
            last
        } else {
            EmbedError::RetriesExhausted {
                provider: self.provider.to_string(),
                url: self.display_url.clone(),
                attempts,
                last: Box::new(last),
            }
        }
    }

    /// Checks count and dimensions of one batch's vectors.
    fn check(&self, expected: usize, vecs: &[Vec<f32>]) -> Result<(), EmbedError> {
        if vecs.len() != expected {
            return Err(EmbedError::CountMismatch {
                model: self.model_id.clone(),
                expected,
                got: vecs.len(),
            });
        }
        for v in vecs {
            if v.is_empty() {
                return Err(self.malformed("empty embedding vector"));
            }
            let want = match self.expected_dims {
                Some(d) => d,
                None => match self.seen_dims.compare_exchange(
                    0,
                    v.len(),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => v.len(),
                    Err(prev) => prev,
                },
            };
            if v.len() != want {
                return Err(EmbedError::DimensionMismatch {
                    model: self.model_id.clone(),
                    expected: want,
                    got: v.len(),
                });
            }
        }
        Ok(())
    }

    /// Splits `texts` into batches, calls `one_batch` for each, checks and concatenates.
    fn embed_batched(
        &self,
        texts: &[&str],
        interrupt: Interrupt<'_>,
        one_batch: impl Fn(&[&str]) -> Result<Vec<Vec<f32>>, EmbedError>,
    ) -> Result<Vec<Vec<f32>>, EmbedError> {
        let mut out = Vec::with_capacity(texts.len());
        for batch in texts.chunks(self.batch_size) {
            interrupt();
            let vecs = one_batch(batch)?;
            self.check(batch.len(), &vecs)?;
            out.extend(vecs);
        }
        Ok(out)
    }
}

/// Error and its sources, joined with ": ".
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(cause) = src {
        let c = cause.to_string();
        if !s.contains(&c) {
            s.push_str(": ");
            s.push_str(&c);
        }
        src = cause.source();
    }
    s
}

fn strip_userinfo_str(s: &str) -> String {
    match reqwest::Url::parse(s) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.to_string()
        }
        Err(_) => match (s.find("://"), s.find('@')) {
            (Some(p), Some(a)) if a > p => format!("{}{}", &s[..p + 3], &s[a + 1..]),
            _ => s.to_string(),
        },
    }
}

/// 200 ms * 2^(n-1), capped at 10 s, plus up to 20 % jitter. `n` >= 1.
fn backoff(n: u32) -> Duration {
    let base =
        BACKOFF_BASE.saturating_mul(1u32.checked_shl(n.saturating_sub(1)).unwrap_or(u32::MAX));
    let base = base.min(BACKOFF_CAP);
    base + base.mul_f64(jitter_fraction() * 0.2)
}

/// Pseudo-random number in [0, 1) from std's randomly keyed hasher.
fn jitter_fraction() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// `Retry-After`: delta-seconds or an HTTP-date (IMF-fixdate, e.g.
/// `Wed, 21 Oct 2015 07:28:00 GMT`), capped at [`MAX_RETRY_AFTER`].
fn parse_retry_after(v: &str, now: SystemTime) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER));
    }
    if let Ok(secs) = v.parse::<f64>() {
        if secs.is_finite() && secs >= 0.0 {
            return Some(Duration::from_secs_f64(
                secs.min(MAX_RETRY_AFTER.as_secs_f64()),
            ));
        }
        return None;
    }
    let at = parse_http_date(v)?;
    let now = now.duration_since(UNIX_EPOCH).ok()?.as_secs() as i64;
    Some(Duration::from_secs((at - now).max(0) as u64).min(MAX_RETRY_AFTER))
}

/// IMF-fixdate -> Unix seconds.
fn parse_http_date(v: &str) -> Option<i64> {
    // "Wed, 21 Oct 2015 07:28:00 GMT"
    let rest = v.split_once(',').map(|(_, r)| r).unwrap_or(v).trim();
    let parts: Vec<&str> = rest.split_whitespace().collect();
    if parts.len() != 5 || !parts[4].eq_ignore_ascii_case("GMT") {
        return None;
    }
    let day: i64 = parts[0].parse().ok()?;
    let month = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ]
    .iter()
    .position(|m| parts[1].eq_ignore_ascii_case(m))? as i64
        + 1;
    let year: i64 = parts[2]
        .parse()
        .ok()
        .filter(|y| (1970..=9999).contains(y))?;
    let hms: Vec<i64> = parts[3]
        .split(':')
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    if hms.len() != 3 || !(1..=31).contains(&day) || hms[0] > 23 || hms[1] > 59 || hms[2] > 60 {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    Some(days * 86400 + hms[0] * 3600 + hms[1] * 60 + hms[2])
}

/// nomic-embed-text expects a task prefix on every input.
fn nomic_prefix(model: &str, kind: InputKind) -> Option<&'static str> {
    if model.to_ascii_lowercase().contains("nomic-embed") {
        Some(match kind {
            InputKind::Document => "search_document: ",
            InputKind::Query => "search_query: ",
        })
    } else {
        None
    }
}

fn with_prefix(texts: &[&str], prefix: Option<&str>) -> Vec<String> {
    texts
        .iter()
        .map(|t| format!("{}{t}", prefix.unwrap_or("")))
        .collect()
}

// ---------------------------------------------------------------------------------
// Ollama

/// Ollama's `POST {base}/api/embed`. Model id: `ollama/{model}`.
pub struct OllamaEmbedder {
    core: HttpCore,
    model: String,
}

#[derive(Deserialize)]
struct OllamaResponse {
    embeddings: Vec<Vec<f32>>,
}

impl OllamaEmbedder {
    /// Validates the configuration and creates the HTTP client (no request is made).
    pub fn new(cfg: HttpConfig) -> Result<Self, EmbedError> {
        let model = cfg.model.clone();
        Ok(OllamaEmbedder {
            core: HttpCore::new("ollama", cfg, "/api/embed")?,
            model,
        })
    }

    /// Replaces the waits between attempts (tests; default: sleep in steps of at most 100 ms,
    /// calling the cancel hook).
    pub fn with_sleeper(mut self, sleeper: impl Fn(Duration) + Send + Sync + 'static) -> Self {
        self.core.sleeper = Some(Arc::new(sleeper));
        self
    }

    /// The endpoint requested, as shown in messages.
    pub fn url(&self) -> &str {
        &self.core.display_url
    }
}

impl Embedder for OllamaEmbedder {
    fn model_id(&self) -> &str {
        &self.core.model_id
    }

    fn dimensions(&self) -> Option<usize> {
        self.core.dimensions()
    }

    fn embed_with(
        &self,
        texts: &[&str],
        kind: InputKind,
        interrupt: Interrupt<'_>,
    ) -> Result<Vec<Vec<f32>>, EmbedError> {
        let prefix = nomic_prefix(&self.model, kind);
        self.core.embed_batched(texts, interrupt, |batch| {
            let body = json!({ "model": self.model, "input": with_prefix(batch, prefix) });
            let resp: OllamaResponse = self.core.post(&body, interrupt)?;
            Ok(resp.embeddings)
        })
    }
}

// ---------------------------------------------------------------------------------
// OpenAI-compatible

/// OpenAI-compatible `POST {base}/v1/embeddings` (the base URL may or may not already
/// end in `/v1`). Model id: `openai/{model}`.
pub struct OpenAiEmbedder {
    core: HttpCore,
    model: String,
}

#[derive(Deserialize)]
struct OpenAiResponse {
    data: Vec<OpenAiItem>,
}

#[derive(Deserialize)]
struct OpenAiItem {
    #[serde(default)]
    index: Option<usize>,
    embedding: Vec<f32>,
}

impl OpenAiEmbedder {
    /// Validates the configuration and creates the HTTP client (no request is made).
    pub fn new(cfg: HttpConfig) -> Result<Self, EmbedError> {
        let model = cfg.model.clone();
        let base = cfg.base_url.trim().trim_end_matches('/');
        let path = if base.ends_with("/v1") {
            "/embeddings"
        } else {
            "/v1/embeddings"
        };
        Ok(OpenAiEmbedder {
            core: HttpCore::new("openai", cfg, path)?,
            model,
        })
    }

    /// Replaces the waits between attempts (tests; default: sleep in steps of at most 100 ms,
    /// calling the cancel hook).
    pub fn with_sleeper(mut self, sleeper: impl Fn(Duration) + Send + Sync + 'static) -> Self {
        self.core.sleeper = Some(Arc::new(sleeper));
        self
    }

    /// The endpoint requested, as shown in messages.
    pub fn url(&self) -> &str {
        &self.core.display_url
    }

    /// Puts `data` in `index` order; indices must be exactly 0..n (or all absent).
    fn reassemble(&self, data: Vec<OpenAiItem>) -> Result<Vec<Vec<f32>>, EmbedError> {
        let n = data.len();
        if data.iter().all(|d| d.index.is_none()) {
            return Ok(data.into_iter().map(|d| d.embedding).collect());
        }
        let mut slots: Vec<Option<Vec<f32>>> = (0..n).map(|_| None).collect();
        for d in data {
            let i = match d.index {
                Some(i) if i < n => i,
                Some(i) => {
                    return Err(self
                        .core
                        .malformed(format!("embedding index {i} out of range for {n} items")))
                }
                None => {
                    return Err(self
                        .core
                        .malformed("some items of \"data\" lack an \"index\""))
                }
            };
            if slots[i].replace(d.embedding).is_some() {
                return Err(self
                    .core
                    .malformed(format!("duplicate embedding index {i}")));
            }
        }
        // n items, n distinct indices in 0..n: every slot is filled.
        Ok(slots.into_iter().flatten().collect())
    }
}

impl Embedder for OpenAiEmbedder {
    fn model_id(&self) -> &str {
        &self.core.model_id
    }

    fn dimensions(&self) -> Option<usize> {
        self.core.dimensions()
    }

    /// nomic-embed models served through an OpenAI-compatible server get the same
    /// task prefixes as with Ollama.
    fn embed_with(
        &self,
        texts: &[&str],
        kind: InputKind,
        interrupt: Interrupt<'_>,
    ) -> Result<Vec<Vec<f32>>, EmbedError> {
        let prefix = nomic_prefix(&self.model, kind);
        self.core.embed_batched(texts, interrupt, |batch| {
            let body = json!({ "model": self.model, "input": with_prefix(batch, prefix) });
            let resp: OpenAiResponse = self.core.post(&body, interrupt)?;
            self.reassemble(resp.data)
        })
    }
}

/// Minimal HTTP/1.1 test server and helpers, shared by the HTTP client tests of the
/// embedding providers and of the chat clients (`crate::chat::llm`).
#[cfg(test)]
pub(crate) mod test_server {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    use std::thread::JoinHandle;
    use std::time::{Duration, Instant};

    #[derive(Clone, Debug)]
    pub(crate) struct Req {
        pub(crate) method: String,
        pub(crate) path: String,
        pub(crate) headers: Vec<(String, String)>,
        pub(crate) body: String,
    }

    impl Req {
        pub(crate) fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }
        pub(crate) fn json(&self) -> serde_json::Value {
            serde_json::from_str(&self.body).expect("request body is JSON")
        }
        pub(crate) fn inputs(&self) -> Vec<String> {
            self.json()["input"]
                .as_array()
                .expect("input array")
                .iter()
                .map(|v| v.as_str().expect("string input").to_string())
                .collect()
        }
    }

    pub(crate) struct Resp {
        pub(crate) status: u16,
        pub(crate) headers: Vec<(&'static str, String)>,
        pub(crate) body: String,
        pub(crate) delay: Duration,
    }

    pub(crate) fn resp(status: u16, body: impl Into<String>) -> Resp {
        Resp {
            status,
            headers: Vec::new(),
            body: body.into(),
            delay: Duration::ZERO,
        }
    }

    /// Minimal HTTP/1.1 server on 127.0.0.1:0 (one connection at a time,
    /// `Connection: close`). Stops when dropped, or by itself after 30 s.
    pub(crate) struct TestServer {
        addr: std::net::SocketAddr,
        reqs: Arc<Mutex<Vec<Req>>>,
        stop: Arc<AtomicBool>,
        handle: Option<JoinHandle<()>>,
    }

    impl TestServer {
        pub(crate) fn start(handler: impl Fn(usize, &Req) -> Resp + Send + 'static) -> Self {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
            listener.set_nonblocking(true).expect("nonblocking");
            let addr = listener.local_addr().expect("addr");
            let reqs = Arc::new(Mutex::new(Vec::new()));
            let stop = Arc::new(AtomicBool::new(false));
            let (reqs2, stop2) = (reqs.clone(), stop.clone());
            let handle = std::thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(30);
                while !stop2.load(Ordering::SeqCst) && Instant::now() < deadline {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let _ = serve_one(stream, &handler, &reqs2);
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(2)),
                    }
                }
            });
            TestServer {
                addr,
                reqs,
                stop,
                handle: Some(handle),
            }
        }

        pub(crate) fn base_url(&self) -> String {
            format!("http://{}", self.addr)
        }

        pub(crate) fn requests(&self) -> Vec<Req> {
            self.reqs.lock().expect("lock").clone()
        }
    }

    impl Drop for TestServer {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::SeqCst);
            if let Some(h) = self.handle.take() {
                let _ = h.join();
            }
        }
    }

    fn serve_one(
        stream: TcpStream,
        handler: &impl Fn(usize, &Req) -> Resp,
        reqs: &Mutex<Vec<Req>>,
    ) -> std::io::Result<()> {
        stream.set_nonblocking(false)?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut reader = BufReader::new(stream.try_clone()?);
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or("").to_string();
        let path = parts.next().unwrap_or("").to_string();
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            reader.read_line(&mut h)?;
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.trim().to_string(), v.trim().to_string()));
            }
        }
        let len: usize = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0u8; len];
        reader.read_exact(&mut body)?;
        let req = Req {
            method,
            path,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        };
        let n = {
            let mut r = reqs.lock().expect("lock");
            r.push(req.clone());
            r.len() - 1
        };
        let r = handler(n, &req);
        std::thread::sleep(r.delay);
        let mut out = format!(
            "HTTP/1.1 {} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
            r.status,
            r.body.len()
        );
        for (k, v) in &r.headers {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        out.push_str("\r\n");
        out.push_str(&r.body);
        let mut stream = stream;
        stream.write_all(out.as_bytes())?;
        stream.flush()
    }

    /// A sleeper that records the requested waits instead of sleeping.
    pub(crate) fn recorder() -> (
        Arc<Mutex<Vec<Duration>>>,
        impl Fn(Duration) + Send + Sync + 'static,
    ) {
        let log = Arc::new(Mutex::new(Vec::new()));
        let l2 = log.clone();
        (log, move |d| l2.lock().expect("lock").push(d))
    }
}

#[cfg(test)]
mod tests {
    use super::test_server::{recorder, resp, Req, Resp, TestServer};
    use super::*;
    use std::net::TcpListener;
    use std::time::Instant;

    /// Vector for input text "t{i}" (prefixes ignored): [i, len, 1].
    fn vec_for(text: &str) -> Vec<f32> {
        let num: f32 = text
            .rsplit('t')
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or(-1.0);
        vec![num, text.len() as f32, 1.0]
    }

    fn ollama_ok(req: &Req) -> Resp {
        let embs: Vec<Vec<f32>> = req.inputs().iter().map(|t| vec_for(t)).collect();
        resp(200, json!({ "model": "m", "embeddings": embs }).to_string())
    }

    fn cfg(base: &str, model: &str) -> HttpConfig {
        HttpConfig {
            base_url: base.to_string(),
            model: model.to_string(),
            api_key: None,
            timeout: Duration::from_secs(5),
            max_retries: 2,
            batch_size: 4,
            dimensions: None,
        }
    }

    fn texts(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("t{i}")).collect()
    }

    fn refs(v: &[String]) -> Vec<&str> {
        v.iter().map(|s| s.as_str()).collect()
    }

    #[test]
    fn ollama_batches_in_order() {
        let srv = TestServer::start(|_, r| ollama_ok(r));
        let e = OllamaEmbedder::new(cfg(&srv.base_url(), "all-minilm")).expect("new");
        assert_eq!(e.model_id(), "ollama/all-minilm");
        assert_eq!(e.dimensions(), None);
        let t = texts(10);
        let out = e.embed(&refs(&t), InputKind::Document).expect("embed");
        assert_eq!(out.len(), 10);
        for (i, v) in out.iter().enumerate() {
            assert_eq!(v[0], i as f32);
        }
        assert_eq!(e.dimensions(), Some(3));
        let reqs = srv.requests();
        assert_eq!(
            reqs.iter().map(|r| r.inputs().len()).collect::<Vec<_>>(),
            vec![4, 4, 2]
        );
        for r in &reqs {
            assert_eq!(r.method, "POST");
            assert_eq!(r.path, "/api/embed");
            assert_eq!(r.json()["model"], "all-minilm");
            assert!(r
                .header("content-type")
                .unwrap_or("")
                .starts_with("application/json"));
            assert!(r.header("authorization").is_none());
        }
        // No inputs: no request.
        assert!(e.embed(&[], InputKind::Query).expect("embed").is_empty());
        assert_eq!(srv.requests().len(), 3);
    }

    #[test]
    fn retry_after_429_does_not_count_as_failure() {
        let srv = TestServer::start(|n, r| {
            if n == 0 {
                let mut x = resp(429, r#"{"error":"rate limited"}"#);
                x.headers.push(("Retry-After", "1".into()));
                x
            } else {
                ollama_ok(r)
            }
        });
        let (log, sleeper) = recorder();
        let mut c = cfg(&srv.base_url(), "m");
        c.max_retries = 0;
        let e = OllamaEmbedder::new(c).expect("new").with_sleeper(sleeper);
        let out = e
            .embed(&["t7"], InputKind::Query)
            .expect("429 then 200 succeeds");
        assert_eq!(out[0][0], 7.0);
        assert_eq!(*log.lock().expect("lock"), vec![Duration::from_secs(1)]);
        assert_eq!(srv.requests().len(), 2);
    }

    #[test]
    fn retries_500_then_succeeds() {
        let srv = TestServer::start(|n, r| {
            if n == 0 {
                resp(500, "boom")
            } else {
                ollama_ok(r)
            }
        });
        let (log, sleeper) = recorder();
        let e = OllamaEmbedder::new(cfg(&srv.base_url(), "m"))
            .expect("new")
            .with_sleeper(sleeper);
        let out = e
            .embed(&["t1", "t2"], InputKind::Document)
            .expect("500 then 200 succeeds");
        assert_eq!(out.len(), 2);
        let log = log.lock().expect("lock").clone();
        assert_eq!(log.len(), 1);
        assert!(
            log[0] >= Duration::from_millis(200) && log[0] <= Duration::from_millis(240),
            "{log:?}"
        );
    }

    #[test]
    fn gives_up_after_max_retries_on_500() {
        let srv = TestServer::start(|_, _| resp(500, r#"{"error":"model crashed"}"#));
        let (log, sleeper) = recorder();
        let e = OllamaEmbedder::new(cfg(&srv.base_url(), "m"))
            .expect("new")
            .with_sleeper(sleeper);
        let err = e.embed(&["t1"], InputKind::Document).expect_err("fails");
        assert_eq!(srv.requests().len(), 3, "1 attempt + 2 retries");
        assert!(
            matches!(err, EmbedError::RetriesExhausted { attempts: 3, .. }),
            "{err:?}"
        );
        assert!(matches!(
            err.root(),
            EmbedError::HttpStatus { status: 500, .. }
        ));
        let msg = err.to_string();
        let url = format!("{}/api/embed", srv.base_url());
        assert!(
            msg.contains(&url) && msg.contains("HTTP 500") && msg.contains("model crashed"),
            "{msg}"
        );
        assert!(msg.contains("ollama"), "{msg}");
        let log = log.lock().expect("lock").clone();
        assert_eq!(log.len(), 2);
        assert!(
            log[1] >= Duration::from_millis(400) && log[1] <= Duration::from_millis(480),
            "{log:?}"
        );
    }

    #[test]
    fn timeout_is_reported() {
        let srv = TestServer::start(|_, r| {
            let mut x = ollama_ok(r);
            x.delay = Duration::from_millis(800);
            x
        });
        let mut c = cfg(&srv.base_url(), "m");
        c.timeout = Duration::from_millis(200);
        c.max_retries = 0;
        let e = OllamaEmbedder::new(c).expect("new");
        let start = Instant::now();
        let err = e
            .embed(&["t1"], InputKind::Document)
            .expect_err("times out");
        assert!(start.elapsed() < Duration::from_millis(700));
        assert!(matches!(err, EmbedError::Timeout { .. }), "{err:?}");
        assert!(err.is_retryable());
        let msg = err.to_string();
        assert!(
            msg.contains("timed out") && msg.contains(&srv.base_url()),
            "{msg}"
        );
    }

    #[test]
    fn connection_refused_is_retried_then_reported() {
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr").port()
        };
        let (log, sleeper) = recorder();
        let mut c = cfg(&format!("http://127.0.0.1:{port}"), "m");
        c.max_retries = 1;
        let e = OllamaEmbedder::new(c).expect("new").with_sleeper(sleeper);
        let err = e.embed(&["t1"], InputKind::Document).expect_err("refused");
        assert!(
            matches!(err.root(), EmbedError::HttpTransport { .. }),
            "{err:?}"
        );
        assert_eq!(log.lock().expect("lock").len(), 1);
        assert!(
            err.to_string()
                .contains(&format!("127.0.0.1:{port}/api/embed")),
            "{err}"
        );
    }

    #[test]
    fn wrong_dimension_and_count_are_errors() {
        let srv = TestServer::start(|_, r| ollama_ok(r));
        let mut c = cfg(&srv.base_url(), "m");
        c.dimensions = Some(4);
        let e = OllamaEmbedder::new(c).expect("new");
        assert_eq!(e.dimensions(), Some(4));
        let err = e.embed(&["t1"], InputKind::Document).expect_err("dim");
        assert!(
            matches!(
                err,
                EmbedError::DimensionMismatch {
                    expected: 4,
                    got: 3,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("dimension 3, expected 4"), "{err}");

        // Inconsistent dimensions within one response.
        let srv = TestServer::start(|_, _| resp(200, r#"{"embeddings":[[1,2,3],[1,2]]}"#));
        let e = OllamaEmbedder::new(cfg(&srv.base_url(), "m")).expect("new");
        let err = e.embed(&["a", "b"], InputKind::Document).expect_err("dim");
        assert!(
            matches!(
                err,
                EmbedError::DimensionMismatch {
                    expected: 3,
                    got: 2,
                    ..
                }
            ),
            "{err:?}"
        );

        // Fewer vectors than inputs.
        let srv = TestServer::start(|_, _| resp(200, r#"{"embeddings":[[1,2,3]]}"#));
        let e = OllamaEmbedder::new(cfg(&srv.base_url(), "m")).expect("new");
        let err = e
            .embed(&["a", "b"], InputKind::Document)
            .expect_err("count");
        assert!(
            matches!(
                err,
                EmbedError::CountMismatch {
                    expected: 2,
                    got: 1,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(
            err.to_string()
                .contains("ollama/m returned 1 embeddings for 2 inputs"),
            "{err}"
        );
    }

    #[test]
    fn malformed_json_is_not_retried() {
        let srv = TestServer::start(|n, _| {
            if n == 0 {
                resp(200, "<html>not json</html>")
            } else {
                resp(200, r#"{"embedding":[1,2]}"#)
            }
        });
        let e = OllamaEmbedder::new(cfg(&srv.base_url(), "m")).expect("new");
        let err = e.embed(&["a"], InputKind::Document).expect_err("malformed");
        assert!(
            matches!(err, EmbedError::MalformedResponse { .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("<html>not json</html>"), "{err}");
        let err = e.embed(&["a"], InputKind::Document).expect_err("malformed");
        assert!(err.to_string().contains("embeddings"), "{err}");
        assert_eq!(srv.requests().len(), 2);
    }

    #[test]
    fn unauthorized_is_not_retried_and_hides_key() {
        const KEY: &str = "sk-test-SECRET-0123456789";
        let srv = TestServer::start(|_, r| {
            let auth = r.header("authorization").unwrap_or("").to_string();
            resp(
                401,
                json!({"error": {"message": format!("Incorrect API key provided: {auth}")}})
                    .to_string(),
            )
        });
        let (log, sleeper) = recorder();
        let mut c = cfg(&srv.base_url(), "text-embedding-3-small");
        c.api_key = Some(KEY.to_string());
        c.max_retries = 3;
        assert!(!format!("{c:?}").contains(KEY));
        let e = OpenAiEmbedder::new(c).expect("new").with_sleeper(sleeper);
        let err = e.embed(&["a"], InputKind::Document).expect_err("401");
        let reqs = srv.requests();
        assert_eq!(reqs.len(), 1, "401 is not retried");
        assert!(log.lock().expect("lock").is_empty());
        assert_eq!(
            reqs[0].header("authorization"),
            Some(format!("Bearer {KEY}").as_str())
        );
        assert!(
            matches!(err, EmbedError::HttpStatus { status: 401, .. }),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains("HTTP 401") && msg.contains("/v1/embeddings") && msg.contains("openai"),
            "{msg}"
        );
        assert!(
            !msg.contains(KEY) && !format!("{err:?}").contains(KEY),
            "{msg}"
        );
        assert!(msg.contains("[redacted]"), "{msg}");
        if let EmbedError::HttpStatus { body, .. } = &err {
            assert!(body.chars().count() <= MAX_BODY_EXCERPT);
        }
    }

    #[test]
    fn key_and_userinfo_never_in_transport_errors() {
        const KEY: &str = "sk-another-SECRET-key";
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr").port()
        };
        let mut c = cfg(&format!("http://admin:hunter2@127.0.0.1:{port}/v1/"), "m");
        c.api_key = Some(KEY.to_string());
        c.max_retries = 0;
        let e = OpenAiEmbedder::new(c).expect("new");
        assert_eq!(e.url(), format!("http://127.0.0.1:{port}/v1/embeddings"));
        let err = e.embed(&["a"], InputKind::Document).expect_err("refused");
        let msg = format!("{err} {err:?}");
        assert!(!msg.contains(KEY) && !msg.contains("hunter2"), "{msg}");
    }

    #[test]
    fn nomic_prefixes() {
        let srv = TestServer::start(|_, r| ollama_ok(r));
        let e = OllamaEmbedder::new(cfg(&srv.base_url(), "nomic-embed-text:latest")).expect("new");
        e.embed(&["t1", "t2"], InputKind::Document).expect("embed");
        e.embed(&["t3"], InputKind::Query).expect("embed");
        let plain = OllamaEmbedder::new(cfg(&srv.base_url(), "mxbai-embed-large")).expect("new");
        plain.embed(&["t4"], InputKind::Query).expect("embed");
        let reqs = srv.requests();
        assert_eq!(
            reqs[0].inputs(),
            vec!["search_document: t1", "search_document: t2"]
        );
        assert_eq!(reqs[1].inputs(), vec!["search_query: t3"]);
        assert_eq!(reqs[2].inputs(), vec!["t4"]);
        assert_eq!(reqs[0].json()["model"], "nomic-embed-text:latest");
    }

    #[test]
    fn openai_reorders_by_index() {
        let srv = TestServer::start(|_, r| {
            let inputs = r.inputs();
            let data: Vec<serde_json::Value> = inputs
                .iter()
                .enumerate()
                .rev()
                .map(|(i, t)| json!({"object": "embedding", "index": i, "embedding": vec_for(t)}))
                .collect();
            resp(200, json!({"object": "list", "data": data, "model": "x", "usage": {"prompt_tokens": 1, "total_tokens": 1}}).to_string())
        });
        for base in [
            srv.base_url(),
            format!("{}/", srv.base_url()),
            format!("{}/v1", srv.base_url()),
        ] {
            let mut c = cfg(&base, "text-embedding-3-small");
            c.batch_size = 3;
            let e = OpenAiEmbedder::new(c).expect("new");
            assert_eq!(e.model_id(), "openai/text-embedding-3-small");
            let t = texts(7);
            let out = e.embed(&refs(&t), InputKind::Document).expect("embed");
            assert_eq!(
                out.iter().map(|v| v[0] as usize).collect::<Vec<_>>(),
                (0..7).collect::<Vec<_>>()
            );
            assert_eq!(e.dimensions(), Some(3));
        }
        let reqs = srv.requests();
        assert_eq!(reqs.len(), 9);
        assert!(reqs
            .iter()
            .all(|r| r.path == "/v1/embeddings" && r.inputs().len() <= 3));
        assert!(reqs.iter().all(|r| r.header("authorization").is_none()));
    }

    #[test]
    fn openai_bad_indices_are_malformed() {
        let srv = TestServer::start(|_, _| {
            resp(
                200,
                r#"{"data":[{"index":0,"embedding":[1,2]},{"index":0,"embedding":[3,4]}]}"#,
            )
        });
        let e = OpenAiEmbedder::new(cfg(&srv.base_url(), "m")).expect("new");
        let err = e.embed(&["a", "b"], InputKind::Document).expect_err("dup");
        assert!(
            err.to_string().contains("duplicate embedding index 0"),
            "{err}"
        );
    }

    #[test]
    fn config_errors() {
        let mut c = cfg("http://localhost:11434", "m");
        c.batch_size = 0;
        assert!(matches!(
            OllamaEmbedder::new(c),
            Err(EmbedError::Config { .. })
        ));
        for bad in ["localhost:11434", "ftp://example.com", "", "http://"] {
            let r = OllamaEmbedder::new(cfg(bad, "m"));
            assert!(matches!(r, Err(EmbedError::Config { .. })), "{bad}");
        }
        assert!(matches!(
            OpenAiEmbedder::new(cfg("http://x", " ")),
            Err(EmbedError::Config { .. })
        ));
    }

    /// reqwest's I/O thread must not take Postgres' signals.
    #[cfg(target_os = "linux")]
    #[test]
    fn client_thread_blocks_signals() {
        let e = OllamaEmbedder::new(cfg("http://127.0.0.1:9", "m")).expect("new");
        let mut found = 0;
        for task in std::fs::read_dir("/proc/self/task")
            .expect("proc")
            .flatten()
        {
            let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
            if !comm.starts_with("reqwest-interna") {
                continue;
            }
            let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
            let Some(blk) = status.lines().find_map(|l| l.strip_prefix("SigBlk:")) else {
                continue;
            };
            let mask = u64::from_str_radix(blk.trim(), 16).expect("hex mask");
            for sig in [2u32, 10, 12, 14, 15, 23] {
                // SIGINT, SIGUSR1, SIGUSR2, SIGALRM, SIGTERM, SIGURG
                assert!(
                    mask & (1u64 << (sig - 1)) != 0,
                    "signal {sig} not blocked: {blk}"
                );
            }
            found += 1;
        }
        assert!(found >= 1, "no reqwest thread found");
        drop(e);
    }

    #[test]
    fn retry_after_parsing() {
        let now = UNIX_EPOCH + Duration::from_secs(1445412480); // Wed, 21 Oct 2015 07:28:00 GMT
        assert_eq!(parse_retry_after("1", now), Some(Duration::from_secs(1)));
        assert_eq!(parse_retry_after(" 120 ", now), Some(MAX_RETRY_AFTER));
        assert_eq!(
            parse_retry_after("0.5", now),
            Some(Duration::from_millis(500))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(
            parse_retry_after("Thu, 22 Oct 2015 07:28:00 GMT", now),
            Some(MAX_RETRY_AFTER)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-1", now), None);
        assert_eq!(parse_retry_after("inf", now), None);
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 99999999999999 07:28:10 GMT", now),
            None
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Foo 2015 07:28:10 GMT", now),
            None
        );
        assert_eq!(parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784111777)
        );
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        for n in 1..=40 {
            let b = backoff(n);
            let base = (200u64 << (n - 1).min(20)).min(10_000);
            assert!(
                b >= Duration::from_millis(base) && b <= Duration::from_millis(base * 12 / 10),
                "{n} {b:?}"
            );
        }
    }

    #[test]
    fn total_wait_is_bounded() {
        // A server that always says "429, retry after 60 s" must not keep us forever.
        let srv = TestServer::start(|_, _| {
            let mut x = resp(429, "slow down");
            x.headers.push(("Retry-After", "60".into()));
            x
        });
        let (log, sleeper) = recorder();
        let mut c = cfg(&srv.base_url(), "m");
        c.max_retries = 100;
        let e = OllamaEmbedder::new(c).expect("new").with_sleeper(sleeper);
        let err = e.embed(&["a"], InputKind::Document).expect_err("gives up");
        let total: Duration = log.lock().expect("lock").iter().sum();
        assert!(total <= MAX_TOTAL_WAIT, "{total:?}");
        assert!(
            matches!(err.root(), EmbedError::HttpStatus { status: 429, .. }),
            "{err:?}"
        );
        assert!(
            err.to_string().contains("HTTP 429 Too Many Requests"),
            "{err}"
        );
    }
}
