//! Chat (text generation) clients over HTTP: Ollama (`POST {base}/api/chat`) and
//! OpenAI-compatible servers (`POST {base}/v1/chat/completions`, the base URL may or may
//! not already end in `/v1`), behind the [`ChatModel`] trait.
//!
//! The HTTP machinery is the embedding clients' (`crate::embed::http::HttpCore`), so the
//! rules are the same:
//!
//! * one request is bounded by [`LlmConfig::timeout`] (connect + send + generate + receive);
//! * connect/transport errors, timeouts, HTTP 408, 429 and 5xx are retried up to
//!   `max_retries` times with exponential backoff (200 ms * 2^n, capped at 10 s, jitter);
//! * a 429/503 with `Retry-After` waits as told (capped at 60 s) without counting as a
//!   failed attempt; all waiting for one call is capped at 120 s;
//! * other 4xx fail at once; a 2xx whose body is not JSON of the documented shape, or
//!   whose answer text is missing or blank, is a [`ChatError::MalformedResponse`].
//!
//! Messages ([`ChatError`]'s `Display`) name the provider, the URL (userinfo removed) and
//! the HTTP status; the API key is only sent in the `Authorization` header and is scrubbed
//! from anything the server echoes back. `Debug` of [`LlmConfig`] hides the key.
//!
//! Answers: leading/trailing whitespace is trimmed, and a leading `<think>...</think>`
//! block (reasoning models such as deepseek-r1 or qwen3 served through Ollama) is removed.
//!
//! Threads and signals: as for the embedders, the client's I/O thread is created with
//! every signal blocked; create chat models in the backend that uses them. Waits between
//! attempts go through an injectable sleeper (`with_sleeper`), so a Postgres caller can
//! sleep in slices and check for query cancellation. No Postgres API is used here.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::json;

use super::prompt::ChatMessage;
use crate::embed::http::{HttpConfig, HttpCore};
use crate::interrupt::Interrupt;
use crate::embed::provider::{status_reason, EmbedError};

/// Configuration of an HTTP chat provider.
#[derive(Clone)]
pub struct LlmConfig {
    /// e.g. `http://localhost:11434` (Ollama) or `https://api.openai.com` / `.../v1`.
    pub base_url: String,
    /// Model name as the server knows it, e.g. `llama3.2`, `gpt-4o-mini`.
    pub model: String,
    /// Sent as `Authorization: Bearer ...` when set. Never appears in error messages.
    pub api_key: Option<String>,
    /// Timeout of one HTTP request, generation included.
    pub timeout: Duration,
    /// Retries after the first attempt for transient failures.
    pub max_retries: u32,
    /// Sampling temperature (finite, >= 0).
    pub temperature: f32,
    /// Most tokens to generate (`num_predict` for Ollama, `max_tokens` for OpenAI);
    /// `None`: the server's default.
    pub max_tokens: Option<u32>,
}

impl LlmConfig {
    /// Defaults: no key, 120 s timeout, 2 retries, temperature 0.1, server's max tokens.
    pub fn new(base_url: impl Into<String>, model: impl Into<String>) -> Self {
        LlmConfig {
            base_url: base_url.into(),
            model: model.into(),
            api_key: None,
            timeout: Duration::from_secs(120),
            max_retries: 2,
            temperature: 0.1,
            max_tokens: None,
        }
    }
}

impl fmt::Debug for LlmConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LlmConfig")
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("timeout", &self.timeout)
            .field("max_retries", &self.max_retries)
            .field("temperature", &self.temperature)
            .field("max_tokens", &self.max_tokens)
            .finish()
    }
}

/// Everything that can go wrong while asking a chat model.
#[derive(Debug)]
pub enum ChatError {
    /// Invalid provider configuration (bad URL, empty model, bad temperature, ...).
    Config { provider: String, detail: String },
    /// The call itself is unusable (no messages, unknown role, ...); nothing was sent.
    InvalidRequest { provider: String, detail: String },
    /// The HTTP request could not be sent or its response not received.
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
        /// A short excerpt of the response body (API key scrubbed).
        body: String,
        /// Parsed `Retry-After` header (already capped), if the server sent one.
        retry_after: Option<Duration>,
    },
    /// The server answered 2xx but not with a usable answer.
    MalformedResponse {
        provider: String,
        url: String,
        detail: String,
    },
    /// The request did not complete within the configured timeout.
    Timeout {
        provider: String,
        url: String,
        timeout: Duration,
    },
    /// All retries failed; `last` is the final error.
    RetriesExhausted {
        provider: String,
        url: String,
        attempts: u32,
        last: Box<ChatError>,
    },
}

impl ChatError {
    /// Whether repeating the same request may succeed: transport errors, timeouts,
    /// HTTP 408, 429 and 5xx (already retried by the clients up to `max_retries`).
    pub fn is_retryable(&self) -> bool {
        match self {
            ChatError::HttpTransport { .. } | ChatError::Timeout { .. } => true,
            ChatError::HttpStatus { status, .. } => crate::embed::provider::is_retryable_status(*status),
            _ => false,
        }
    }

    /// The underlying error, looking through [`ChatError::RetriesExhausted`].
    pub fn root(&self) -> &ChatError {
        match self {
            ChatError::RetriesExhausted { last, .. } => last.root(),
            other => other,
        }
    }

    /// HTTP status of the (root) error, if the server answered with one.
    pub fn http_status(&self) -> Option<u16> {
        match self.root() {
            ChatError::HttpStatus { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The chat equivalent of an error of the shared HTTP machinery.
    fn from_http(e: EmbedError) -> ChatError {
        match e {
            EmbedError::Config { provider, detail } => ChatError::Config { provider, detail },
            EmbedError::HttpTransport {
                provider,
                url,
                detail,
            } => ChatError::HttpTransport {
                provider,
                url,
                detail,
            },
            EmbedError::HttpStatus {
                provider,
                url,
                status,
                body,
                retry_after,
            } => ChatError::HttpStatus {
                provider,
                url,
                status,
                body,
                retry_after,
            },
            EmbedError::MalformedResponse {
                provider,
                url,
                detail,
            } => ChatError::MalformedResponse {
                provider,
                url,
                detail,
            },
            EmbedError::Timeout {
                provider,
                url,
                timeout,
            } => ChatError::Timeout {
                provider,
                url,
                timeout,
            },
            EmbedError::RetriesExhausted {
                provider,
                url,
                attempts,
                last,
            } => ChatError::RetriesExhausted {
                provider,
                url,
                attempts,
                last: Box::new(ChatError::from_http(*last)),
            },
            // Embedding-only failures cannot come out of a chat request; keep their text.
            other => ChatError::MalformedResponse {
                provider: String::new(),
                url: String::new(),
                detail: other.to_string(),
            },
        }
    }
}

impl fmt::Display for ChatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChatError::Config { provider, detail } => {
                write!(f, "invalid configuration for chat provider {provider}: {detail}")
            }
            ChatError::InvalidRequest { provider, detail } => {
                write!(f, "chat provider {provider}: invalid request: {detail}")
            }
            ChatError::HttpTransport {
                provider,
                url,
                detail,
            } => write!(f, "chat provider {provider}: request to {url} failed: {detail}"),
            ChatError::HttpStatus {
                provider,
                url,
                status,
                body,
                ..
            } => {
                write!(f, "chat provider {provider}: {url} answered HTTP {status}")?;
                if let Some(reason) = status_reason(*status) {
                    write!(f, " {reason}")?;
                }
                if !body.is_empty() {
                    write!(f, ": {body}")?;
                }
                Ok(())
            }
            ChatError::MalformedResponse {
                provider,
                url,
                detail,
            } => write!(
                f,
                "chat provider {provider}: unexpected response from {url}: {detail}"
            ),
            ChatError::Timeout {
                provider,
                url,
                timeout,
            } => write!(
                f,
                "chat provider {provider}: request to {url} timed out after {:.1} s",
                timeout.as_secs_f64()
            ),
            ChatError::RetriesExhausted {
                provider,
                url,
                attempts,
                last,
            } => write!(
                f,
                "chat provider {provider}: giving up on {url} after {attempts} attempts; last error: {last}"
            ),
        }
    }
}

impl std::error::Error for ChatError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ChatError::RetriesExhausted { last, .. } => Some(last.as_ref()),
            _ => None,
        }
    }
}

/// A chat model: turns messages into one assistant answer. Blocks the calling thread.
pub trait ChatModel: Send + Sync {
    /// e.g. `"ollama/llama3.2"`, `"openai/gpt-4o-mini"`.
    fn model_id(&self) -> String;
    /// The assistant's answer (trimmed, never empty) to `messages`. No cancel hook: see
    /// [`ChatModel::complete_with`].
    fn complete(&self, messages: &[ChatMessage]) -> Result<String, ChatError> {
        self.complete_with(messages, &crate::interrupt::never)
    }
    /// [`ChatModel::complete`], calling `interrupt` on the calling thread at least every
    /// 100 ms while waiting for the server or between retries.
    fn complete_with(&self, messages: &[ChatMessage], interrupt: Interrupt<'_>) -> Result<String, ChatError>;
}

/// Shared part of both clients: the HTTP core plus generation settings.
struct ChatCore {
    provider: &'static str,
    http: HttpCore,
    model: String,
    temperature: f32,
    max_tokens: Option<u32>,
}

impl ChatCore {
    fn new(provider: &'static str, cfg: LlmConfig, path: &str) -> Result<Self, ChatError> {
        let config_err = |detail: String| ChatError::Config {
            provider: provider.to_string(),
            detail,
        };
        if !cfg.temperature.is_finite() || cfg.temperature < 0.0 {
            return Err(config_err(format!(
                "temperature must be a finite number >= 0, not {}",
                cfg.temperature
            )));
        }
        if cfg.max_tokens == Some(0) {
            return Err(config_err("max_tokens must be at least 1".into()));
        }
        let model = cfg.model.trim().to_string();
        let http_cfg = HttpConfig {
            base_url: cfg.base_url,
            model: model.clone(),
            api_key: cfg.api_key,
            timeout: cfg.timeout,
            max_retries: cfg.max_retries,
            batch_size: 1,
            dimensions: None,
        };
        let http = HttpCore::new(provider, http_cfg, path).map_err(ChatError::from_http)?;
        Ok(ChatCore {
            provider,
            http,
            model,
            temperature: cfg.temperature,
            max_tokens: cfg.max_tokens,
        })
    }

    /// The messages as JSON, after checking there is something to send.
    fn messages_json(&self, messages: &[ChatMessage]) -> Result<serde_json::Value, ChatError> {
        let invalid = |detail: String| ChatError::InvalidRequest {
            provider: self.provider.to_string(),
            detail,
        };
        if messages.is_empty() {
            return Err(invalid("no messages to send".into()));
        }
        let mut out = Vec::with_capacity(messages.len());
        for (i, m) in messages.iter().enumerate() {
            let role = m.role.trim().to_ascii_lowercase();
            if !matches!(role.as_str(), "system" | "user" | "assistant") {
                return Err(invalid(format!(
                    "message {} has role \"{}\"; expected system, user or assistant",
                    i + 1,
                    m.role
                )));
            }
            out.push(json!({ "role": role, "content": m.content }));
        }
        Ok(serde_json::Value::Array(out))
    }

    fn post<T: for<'de> Deserialize<'de>>(
        &self,
        body: &serde_json::Value,
        interrupt: Interrupt<'_>,
    ) -> Result<T, ChatError> {
        self.http.post(body, interrupt).map_err(ChatError::from_http)
    }

    /// Cleans up the answer text; missing or blank is an error.
    fn answer(&self, content: Option<String>, what: &str) -> Result<String, ChatError> {
        let text = content.unwrap_or_default();
        let text = strip_think(&text).trim();
        if text.is_empty() {
            return Err(ChatError::from_http(self.http.malformed(format!(
                "{what} is missing or empty (model {})",
                self.model
            ))));
        }
        Ok(text.to_string())
    }

    fn malformed(&self, detail: String) -> ChatError {
        ChatError::from_http(self.http.malformed(detail))
    }
}

/// `text` without a leading `<think>...</think>` block (an unterminated one is kept).
fn strip_think(text: &str) -> &str {
    let t = text.trim_start();
    if let Some(rest) = t.strip_prefix("<think>") {
        if let Some(end) = rest.find("</think>") {
            return &rest[end + "</think>".len()..];
        }
    }
    text
}

// ---------------------------------------------------------------------------------
// Ollama

/// Ollama's `POST {base}/api/chat` (non-streaming). Model id: `ollama/{model}`.
pub struct OllamaChat {
    core: ChatCore,
}

#[derive(Deserialize)]
struct OllamaChatResponse {
    #[serde(default)]
    message: Option<OllamaMessage>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct OllamaMessage {
    #[serde(default)]
    content: Option<String>,
}

impl OllamaChat {
    /// Validates the configuration and creates the HTTP client (no request is made).
    pub fn new(cfg: LlmConfig) -> Result<Self, ChatError> {
        Ok(OllamaChat {
            core: ChatCore::new("ollama", cfg, "/api/chat")?,
        })
    }

    /// Replaces the waits between attempts (tests; default: sleep in steps of at most 100 ms,
    /// calling the cancel hook).
    pub fn with_sleeper(mut self, sleeper: impl Fn(Duration) + Send + Sync + 'static) -> Self {
        self.core.http.sleeper = Some(Arc::new(sleeper));
        self
    }

    /// The endpoint requested, as shown in messages.
    pub fn url(&self) -> &str {
        &self.core.http.display_url
    }
}

impl ChatModel for OllamaChat {
    fn model_id(&self) -> String {
        self.core.http.model_id.clone()
    }

    fn complete_with(&self, messages: &[ChatMessage], interrupt: Interrupt<'_>) -> Result<String, ChatError> {
        let c = &self.core;
        let mut options = json!({ "temperature": c.temperature });
        if let Some(n) = c.max_tokens {
            options["num_predict"] = json!(n);
        }
        let body = json!({
            "model": c.model,
            "messages": c.messages_json(messages)?,
            "stream": false,
            "options": options,
        });
        let resp: OllamaChatResponse = c.post(&body, interrupt)?;
        if let Some(err) = resp.error.filter(|e| !e.trim().is_empty()) {
            return Err(c.malformed(format!("server reported an error: {err}")));
        }
        let Some(msg) = resp.message else {
            return Err(c.malformed(format!(
                "no \"message\" in the response (model {})",
                c.model
            )));
        };
        c.answer(msg.content, "\"message.content\"")
    }
}

// ---------------------------------------------------------------------------------
// OpenAI-compatible

/// OpenAI-compatible `POST {base}/v1/chat/completions` (the base URL may or may not
/// already end in `/v1`). Model id: `openai/{model}`.
pub struct OpenAiChat {
    core: ChatCore,
}

#[derive(Deserialize)]
struct OpenAiChatResponse {
    #[serde(default)]
    choices: Option<Vec<OpenAiChoice>>,
}

#[derive(Deserialize)]
struct OpenAiChoice {
    #[serde(default)]
    message: Option<OpenAiMessage>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct OpenAiMessage {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    refusal: Option<String>,
}

impl OpenAiChat {
    /// Validates the configuration and creates the HTTP client (no request is made).
    pub fn new(cfg: LlmConfig) -> Result<Self, ChatError> {
        let base = cfg.base_url.trim().trim_end_matches('/');
        let path = if base.ends_with("/v1") {
            "/chat/completions"
        } else {
            "/v1/chat/completions"
        };
        Ok(OpenAiChat {
            core: ChatCore::new("openai", cfg, path)?,
        })
    }

    /// Replaces the waits between attempts (tests; default: sleep in steps of at most 100 ms,
    /// calling the cancel hook).
    pub fn with_sleeper(mut self, sleeper: impl Fn(Duration) + Send + Sync + 'static) -> Self {
        self.core.http.sleeper = Some(Arc::new(sleeper));
        self
    }

    /// The endpoint requested, as shown in messages.
    pub fn url(&self) -> &str {
        &self.core.http.display_url
    }
}

impl ChatModel for OpenAiChat {
    fn model_id(&self) -> String {
        self.core.http.model_id.clone()
    }

    fn complete_with(&self, messages: &[ChatMessage], interrupt: Interrupt<'_>) -> Result<String, ChatError> {
        let c = &self.core;
        let mut body = json!({
            "model": c.model,
            "messages": c.messages_json(messages)?,
            "temperature": c.temperature,
        });
        if let Some(n) = c.max_tokens {
            body["max_tokens"] = json!(n);
        }
        let resp: OpenAiChatResponse = c.post(&body, interrupt)?;
        let Some(choice) = resp.choices.and_then(|v| v.into_iter().next()) else {
            return Err(c.malformed(format!(
                "no \"choices\" in the response (model {})",
                c.model
            )));
        };
        let Some(msg) = choice.message else {
            return Err(c.malformed("\"choices[0].message\" is missing".into()));
        };
        let content = msg.content.filter(|t| !t.trim().is_empty());
        if content.is_none() {
            if let Some(r) = msg.refusal.filter(|r| !r.trim().is_empty()) {
                return Err(c.malformed(format!("the model refused to answer: {r}")));
            }
            if let Some(fr) = choice.finish_reason.filter(|f| f != "stop") {
                return Err(c.malformed(format!(
                    "\"choices[0].message.content\" is missing or empty (finish_reason \"{fr}\", model {})",
                    c.model
                )));
            }
        }
        c.answer(content, "\"choices[0].message.content\"")
    }
}

#[cfg(test)]
#[path = "llm_tests.rs"]
mod tests;
