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
        // A query string can carry a token (?key=...): errors never show it.
        shown.set_query(None);
        shown.set_fragment(None);
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
#[path = "http_test_server.rs"]
pub(crate) mod test_server;
#[cfg(test)]
#[path = "http_tests.rs"]
mod tests;
