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
mod tests {
    use super::*;
    use crate::chat::prompt::{build_answer_prompt, Source, Turn};
    use crate::embed::http::test_server::{recorder, resp, Req, Resp, TestServer};
    use std::net::TcpListener;
    use std::time::Instant;

    fn cfg(base: &str, model: &str) -> LlmConfig {
        LlmConfig {
            base_url: base.to_string(),
            model: model.to_string(),
            api_key: None,
            timeout: Duration::from_secs(5),
            max_retries: 2,
            temperature: 0.2,
            max_tokens: None,
        }
    }

    fn msgs() -> Vec<ChatMessage> {
        vec![
            ChatMessage::new("system", "Answer from the sources."),
            ChatMessage::new(
                "user",
                "[1] (a.md)\npgmq is a queue.\n\nQuestion: What is pgmq?",
            ),
        ]
    }

    /// Ollama answer echoing the number of messages received.
    fn ollama_ok(req: &Req) -> Resp {
        let n = req.json()["messages"].as_array().map_or(0, |a| a.len());
        resp(
            200,
            json!({
                "model": "llama3.2",
                "created_at": "2024-01-01T00:00:00Z",
                "message": {"role": "assistant", "content": format!(" pgmq is a message queue [1]. ({n} messages)\n")},
                "done_reason": "stop",
                "done": true,
                "total_duration": 123,
                "eval_count": 9
            })
            .to_string(),
        )
    }

    fn openai_ok(content: serde_json::Value) -> Resp {
        resp(
            200,
            json!({
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "created": 1,
                "model": "gpt-4o-mini",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
            })
            .to_string(),
        )
    }

    #[test]
    fn ollama_success_and_request_format() {
        let srv = TestServer::start(|_, r| ollama_ok(r));
        let mut c = cfg(&srv.base_url(), "llama3.2");
        c.max_tokens = Some(256);
        let m = OllamaChat::new(c).expect("new");
        assert_eq!(m.model_id(), "ollama/llama3.2");
        assert_eq!(m.url(), format!("{}/api/chat", srv.base_url()));
        let out = m.complete(&msgs()).expect("complete");
        assert_eq!(out, "pgmq is a message queue [1]. (2 messages)");
        let reqs = srv.requests();
        assert_eq!(reqs.len(), 1);
        let r = &reqs[0];
        assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/api/chat"));
        let j = r.json();
        assert_eq!(j["model"], "llama3.2");
        assert_eq!(j["stream"], false);
        assert!((j["options"]["temperature"].as_f64().expect("temp") - 0.2).abs() < 1e-6);
        assert_eq!(j["options"]["num_predict"], 256);
        assert_eq!(j["messages"][0]["role"], "system");
        assert_eq!(j["messages"][1]["role"], "user");
        assert_eq!(j["messages"][1]["content"], msgs()[1].content);
        assert!(r.header("authorization").is_none());
    }

    #[test]
    fn openai_success_with_and_without_v1() {
        let srv = TestServer::start(|_, _| openai_ok(json!("Use CREATE EXTENSION pgmq [1].")));
        for base in [
            srv.base_url(),
            format!("{}/", srv.base_url()),
            format!("{}/v1", srv.base_url()),
        ] {
            let mut c = cfg(&base, "gpt-4o-mini");
            c.api_key = Some("sk-test-key".into());
            let m = OpenAiChat::new(c).expect("new");
            assert_eq!(m.model_id(), "openai/gpt-4o-mini");
            assert_eq!(
                m.complete(&msgs()).expect("complete"),
                "Use CREATE EXTENSION pgmq [1]."
            );
        }
        let reqs = srv.requests();
        assert_eq!(reqs.len(), 3);
        for r in &reqs {
            assert_eq!(r.path, "/v1/chat/completions");
            assert_eq!(r.header("authorization"), Some("Bearer sk-test-key"));
            let j = r.json();
            assert_eq!(j["model"], "gpt-4o-mini");
            assert!(j.get("max_tokens").is_none());
            assert!(j.get("temperature").is_some());
            assert_eq!(j["messages"].as_array().map(|a| a.len()), Some(2));
        }
    }

    /// What the server receives holds the prompt: sources, history, question.
    #[test]
    fn request_carries_sources_and_history() {
        let srv = TestServer::start(|_, _| openai_ok(json!("ok [2]")));
        let mut c = cfg(&srv.base_url(), "m");
        c.max_tokens = Some(100);
        let m = OpenAiChat::new(c).expect("new");
        let sources = vec![
            Source {
                rank: 1,
                chunk_id: "c1".into(),
                file_name: "install.md".into(),
                content: "Run make install to build the extension.".into(),
            },
            Source {
                rank: 2,
                chunk_id: "c2".into(),
                file_name: "queue.md".into(),
                content: "The queue worker polls pgmq every second.".into(),
            },
        ];
        let history = vec![
            Turn {
                role: "user".into(),
                content: "What does the worker do?".into(),
            },
            Turn {
                role: "assistant".into(),
                content: "It embeds documents [1].".into(),
            },
        ];
        let prompt = build_answer_prompt("How often does it poll?", &sources, &history, 4000);
        assert_eq!(m.complete(&prompt).expect("complete"), "ok [2]");
        let j = srv.requests()[0].json();
        assert_eq!(j["max_tokens"], 100);
        let sent: Vec<(String, String)> = j["messages"]
            .as_array()
            .expect("messages")
            .iter()
            .map(|m| {
                (
                    m["role"].as_str().unwrap_or("").to_string(),
                    m["content"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect();
        let roles: Vec<&str> = sent.iter().map(|(r, _)| r.as_str()).collect();
        assert_eq!(roles, vec!["system", "user", "assistant", "user"]);
        assert_eq!(sent[1].1, "What does the worker do?");
        assert_eq!(sent[2].1, "It embeds documents [1].");
        let last = &sent[3].1;
        assert!(last.contains("[1] (install.md)\nRun make install to build the extension."));
        assert!(last.contains("[2] (queue.md)\nThe queue worker polls pgmq every second."));
        assert!(last.contains("How often does it poll?"));
    }

    #[test]
    fn retry_after_429_then_success() {
        let srv = TestServer::start(|n, r| {
            if n == 0 {
                let mut x = resp(429, r#"{"error":{"message":"Rate limit reached"}}"#);
                x.headers.push(("Retry-After", "2".into()));
                x
            } else {
                ollama_ok(r)
            }
        });
        let (log, sleeper) = recorder();
        let mut c = cfg(&srv.base_url(), "m");
        c.max_retries = 0; // the Retry-After wait is not a failed attempt
        let m = OllamaChat::new(c).expect("new").with_sleeper(sleeper);
        let out = m.complete(&msgs()).expect("429 then 200");
        assert!(out.starts_with("pgmq is a message queue"));
        assert_eq!(*log.lock().expect("lock"), vec![Duration::from_secs(2)]);
        assert_eq!(srv.requests().len(), 2);
    }

    #[test]
    fn server_error_forever_names_url_and_status() {
        let srv = TestServer::start(|_, _| resp(500, r#"{"error":"model runner crashed"}"#));
        let (log, sleeper) = recorder();
        let m = OpenAiChat::new(cfg(&srv.base_url(), "m"))
            .expect("new")
            .with_sleeper(sleeper);
        let err = m.complete(&msgs()).expect_err("fails");
        assert_eq!(srv.requests().len(), 3, "1 attempt + 2 retries");
        assert_eq!(log.lock().expect("lock").len(), 2);
        assert!(
            matches!(err, ChatError::RetriesExhausted { attempts: 3, .. }),
            "{err:?}"
        );
        assert_eq!(err.http_status(), Some(500));
        let msg = err.to_string();
        let url = format!("{}/v1/chat/completions", srv.base_url());
        assert!(msg.contains(&url), "{msg}");
        assert!(msg.contains("HTTP 500 Internal Server Error"), "{msg}");
        assert!(
            msg.contains("chat provider openai") && msg.contains("model runner crashed"),
            "{msg}"
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
        let m = OllamaChat::new(c).expect("new");
        let start = Instant::now();
        let err = m.complete(&msgs()).expect_err("times out");
        assert!(start.elapsed() < Duration::from_millis(700));
        assert!(matches!(err, ChatError::Timeout { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains("timed out after 0.2 s") && msg.contains(&srv.base_url()),
            "{msg}"
        );
    }

    #[test]
    fn malformed_responses() {
        let srv = TestServer::start(|n, _| match n {
            0 => resp(200, "<html>gateway page</html>"),
            1 => resp(
                200,
                r#"{"message":{"role":"assistant","content":"  "},"done":true}"#,
            ),
            2 => resp(200, r#"{"done":true}"#),
            3 => resp(200, r#"{"error":"model 'x' not loaded"}"#),
            4 => resp(
                200,
                r#"{"message":{"role":"assistant","content":"<think>hmm</think>\n\n"},"done":true}"#,
            ),
            _ => resp(
                200,
                r#"{"message":{"role":"assistant","content":"<think>hmm</think>\nFinal [1]"},"done":true}"#,
            ),
        });
        let m = OllamaChat::new(cfg(&srv.base_url(), "m")).expect("new");
        let expect = [
            "<html>gateway page</html>",
            "message.content",
            "no \"message\"",
            "model 'x' not loaded",
            "message.content",
        ];
        for want in expect {
            let err = m.complete(&msgs()).expect_err("malformed");
            assert!(
                matches!(err, ChatError::MalformedResponse { .. }),
                "{err:?}"
            );
            let msg = err.to_string();
            assert!(
                msg.contains(want) && msg.contains("/api/chat"),
                "{want}: {msg}"
            );
        }
        assert_eq!(m.complete(&msgs()).expect("ok"), "Final [1]");
        assert_eq!(srv.requests().len(), 6, "malformed answers are not retried");

        let srv = TestServer::start(|n, _| match n {
            0 => openai_ok(serde_json::Value::Null),
            1 => resp(200, r#"{"choices":[]}"#),
            2 => resp(
                200,
                r#"{"choices":[{"message":{"role":"assistant","content":null,"refusal":"I can't help"},"finish_reason":"stop"}]}"#,
            ),
            3 => resp(
                200,
                r#"{"choices":[{"message":{"role":"assistant","content":""},"finish_reason":"length"}]}"#,
            ),
            _ => resp(
                200,
                r#"{"choices":[{"message":{"role":"assistant","content":[1,2]}}]}"#,
            ),
        });
        let m = OpenAiChat::new(cfg(&srv.base_url(), "m")).expect("new");
        let expect = [
            "choices[0].message.content",
            "no \"choices\"",
            "refused to answer: I can't help",
            "finish_reason \"length\"",
            "invalid JSON",
        ];
        for want in expect {
            let err = m.complete(&msgs()).expect_err("malformed");
            assert!(
                matches!(err, ChatError::MalformedResponse { .. }),
                "{err:?}"
            );
            let msg = err.to_string();
            assert!(
                msg.contains(want) && msg.contains("/v1/chat/completions"),
                "{want}: {msg}"
            );
        }
    }

    #[test]
    fn unauthorized_fails_at_once_and_hides_key() {
        const KEY: &str = "sk-proj-SECRET-abcdef0123456789";
        let srv = TestServer::start(|_, r| {
            let auth = r.header("authorization").unwrap_or("").to_string();
            resp(
                401,
                json!({"error": {"message": format!("Incorrect API key provided: {auth}"), "type": "invalid_request_error"}})
                    .to_string(),
            )
        });
        let (log, sleeper) = recorder();
        let mut c = cfg(&srv.base_url(), "gpt-4o");
        c.api_key = Some(KEY.to_string());
        c.max_retries = 3;
        assert!(!format!("{c:?}").contains(KEY));
        let m = OpenAiChat::new(c).expect("new").with_sleeper(sleeper);
        let err = m.complete(&msgs()).expect_err("401");
        assert_eq!(srv.requests().len(), 1, "401 is not retried");
        assert!(log.lock().expect("lock").is_empty());
        assert_eq!(
            srv.requests()[0].header("authorization"),
            Some(format!("Bearer {KEY}").as_str())
        );
        assert!(
            matches!(err, ChatError::HttpStatus { status: 401, .. }),
            "{err:?}"
        );
        assert!(!err.is_retryable());
        let all = format!("{err} {err:?}");
        assert!(!all.contains(KEY), "{all}");
        let msg = err.to_string();
        assert!(
            msg.contains("HTTP 401 Unauthorized") && msg.contains("[redacted]"),
            "{msg}"
        );
        assert!(
            msg.contains(&format!("{}/v1/chat/completions", srv.base_url())),
            "{msg}"
        );
    }

    #[test]
    fn connection_refused_names_url() {
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr").port()
        };
        let (log, sleeper) = recorder();
        let mut c = cfg(&format!("http://admin:pa55word@127.0.0.1:{port}/"), "m");
        c.max_retries = 1;
        c.api_key = Some("sk-secret-key-123".into());
        let m = OllamaChat::new(c).expect("new").with_sleeper(sleeper);
        let err = m.complete(&msgs()).expect_err("refused");
        let all = format!("{err} {err:?}");
        assert!(
            !all.contains("pa55word") && !all.contains("sk-secret-key-123"),
            "{all}"
        );
        assert!(
            matches!(err.root(), ChatError::HttpTransport { .. }),
            "{err:?}"
        );
        assert_eq!(log.lock().expect("lock").len(), 1);
        assert!(
            err.to_string()
                .contains(&format!("127.0.0.1:{port}/api/chat")),
            "{err}"
        );
    }

    #[test]
    fn invalid_config_and_requests() {
        for bad in ["localhost:11434", "ftp://x", "", "http://"] {
            assert!(
                matches!(
                    OllamaChat::new(cfg(bad, "m")),
                    Err(ChatError::Config { .. })
                ),
                "{bad}"
            );
        }
        let e = OpenAiChat::new(cfg("http://x", " "))
            .err()
            .expect("empty model");
        assert!(
            e.to_string()
                .starts_with("invalid configuration for chat provider openai"),
            "{e}"
        );
        let mut c = cfg("http://x", "m");
        c.temperature = f32::NAN;
        assert!(matches!(OllamaChat::new(c), Err(ChatError::Config { .. })));
        let mut c = cfg("http://x", "m");
        c.max_tokens = Some(0);
        assert!(matches!(OpenAiChat::new(c), Err(ChatError::Config { .. })));

        let srv = TestServer::start(|_, r| ollama_ok(r));
        let m = OllamaChat::new(cfg(&srv.base_url(), "m")).expect("new");
        assert!(matches!(
            m.complete(&[]),
            Err(ChatError::InvalidRequest { .. })
        ));
        let bad = [ChatMessage::new("tool", "x")];
        let err = m.complete(&bad).expect_err("role");
        assert!(err.to_string().contains("role \"tool\""), "{err}");
        assert!(srv.requests().is_empty());
    }

    #[test]
    fn think_blocks() {
        assert_eq!(strip_think("<think>a</think>b"), "b");
        assert_eq!(strip_think("  <think>\na\n</think>\n\nb"), "\n\nb");
        assert_eq!(strip_think("<think>unterminated"), "<think>unterminated");
        assert_eq!(
            strip_think("plain <think>x</think>"),
            "plain <think>x</think>"
        );
    }
}
