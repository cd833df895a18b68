//! Tests of the chat clients against the test server.

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
        ChatMessage::new("user", "[1] (a.md)\npgmq is a queue.\n\nQuestion: What is pgmq?"),
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
    for base in [srv.base_url(), format!("{}/", srv.base_url()), format!("{}/v1", srv.base_url())] {
        let mut c = cfg(&base, "gpt-4o-mini");
        c.api_key = Some("sk-test-key".into());
        let m = OpenAiChat::new(c).expect("new");
        assert_eq!(m.model_id(), "openai/gpt-4o-mini");
        assert_eq!(m.complete(&msgs()).expect("complete"), "Use CREATE EXTENSION pgmq [1].");
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
        Turn { role: "user".into(), content: "What does the worker do?".into() },
        Turn { role: "assistant".into(), content: "It embeds documents [1].".into() },
    ];
    let prompt = build_answer_prompt("How often does it poll?", &sources, &history, 4000);
    assert_eq!(m.complete(&prompt).expect("complete"), "ok [2]");
    let j = srv.requests()[0].json();
    assert_eq!(j["max_tokens"], 100);
    let sent: Vec<(String, String)> = j["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| (m["role"].as_str().unwrap_or("").to_string(), m["content"].as_str().unwrap_or("").to_string()))
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
    let m = OpenAiChat::new(cfg(&srv.base_url(), "m")).expect("new").with_sleeper(sleeper);
    let err = m.complete(&msgs()).expect_err("fails");
    assert_eq!(srv.requests().len(), 3, "1 attempt + 2 retries");
    assert_eq!(log.lock().expect("lock").len(), 2);
    assert!(matches!(err, ChatError::RetriesExhausted { attempts: 3, .. }), "{err:?}");
    assert_eq!(err.http_status(), Some(500));
    let msg = err.to_string();
    let url = format!("{}/v1/chat/completions", srv.base_url());
    assert!(msg.contains(&url), "{msg}");
    assert!(msg.contains("HTTP 500 Internal Server Error"), "{msg}");
    assert!(msg.contains("chat provider openai") && msg.contains("model runner crashed"), "{msg}");
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
    assert!(msg.contains("timed out after 0.2 s") && msg.contains(&srv.base_url()), "{msg}");
}

#[test]
fn malformed_responses() {
    let srv = TestServer::start(|n, _| match n {
        0 => resp(200, "<html>gateway page</html>"),
        1 => resp(200, r#"{"message":{"role":"assistant","content":"  "},"done":true}"#),
        2 => resp(200, r#"{"done":true}"#),
        3 => resp(200, r#"{"error":"model 'x' not loaded"}"#),
        4 => resp(200, r#"{"message":{"role":"assistant","content":"<think>hmm</think>\n\n"},"done":true}"#),
        _ => resp(200, r#"{"message":{"role":"assistant","content":"<think>hmm</think>\nFinal [1]"},"done":true}"#),
    });
    let m = OllamaChat::new(cfg(&srv.base_url(), "m")).expect("new");
    let expect =
        ["<html>gateway page</html>", "message.content", "no \"message\"", "model 'x' not loaded", "message.content"];
    for want in expect {
        let err = m.complete(&msgs()).expect_err("malformed");
        assert!(matches!(err, ChatError::MalformedResponse { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains(want) && msg.contains("/api/chat"), "{want}: {msg}");
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
        3 => resp(200, r#"{"choices":[{"message":{"role":"assistant","content":""},"finish_reason":"length"}]}"#),
        _ => resp(200, r#"{"choices":[{"message":{"role":"assistant","content":[1,2]}}]}"#),
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
        assert!(matches!(err, ChatError::MalformedResponse { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains(want) && msg.contains("/v1/chat/completions"), "{want}: {msg}");
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
    assert_eq!(srv.requests()[0].header("authorization"), Some(format!("Bearer {KEY}").as_str()));
    assert!(matches!(err, ChatError::HttpStatus { status: 401, .. }), "{err:?}");
    assert!(!err.is_retryable());
    let all = format!("{err} {err:?}");
    assert!(!all.contains(KEY), "{all}");
    let msg = err.to_string();
    assert!(msg.contains("HTTP 401 Unauthorized") && msg.contains("[redacted]"), "{msg}");
    assert!(msg.contains(&format!("{}/v1/chat/completions", srv.base_url())), "{msg}");
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
    assert!(!all.contains("pa55word") && !all.contains("sk-secret-key-123"), "{all}");
    assert!(matches!(err.root(), ChatError::HttpTransport { .. }), "{err:?}");
    assert_eq!(log.lock().expect("lock").len(), 1);
    assert!(err.to_string().contains(&format!("127.0.0.1:{port}/api/chat")), "{err}");
}

#[test]
fn invalid_config_and_requests() {
    for bad in ["localhost:11434", "ftp://x", "", "http://"] {
        assert!(matches!(OllamaChat::new(cfg(bad, "m")), Err(ChatError::Config { .. })), "{bad}");
    }
    let e = OpenAiChat::new(cfg("http://x", " ")).err().expect("empty model");
    assert!(e.to_string().starts_with("invalid configuration for chat provider openai"), "{e}");
    let mut c = cfg("http://x", "m");
    c.temperature = f32::NAN;
    assert!(matches!(OllamaChat::new(c), Err(ChatError::Config { .. })));
    let mut c = cfg("http://x", "m");
    c.max_tokens = Some(0);
    assert!(matches!(OpenAiChat::new(c), Err(ChatError::Config { .. })));

    let srv = TestServer::start(|_, r| ollama_ok(r));
    let m = OllamaChat::new(cfg(&srv.base_url(), "m")).expect("new");
    assert!(matches!(m.complete(&[]), Err(ChatError::InvalidRequest { .. })));
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
    assert_eq!(strip_think("plain <think>x</think>"), "plain <think>x</think>");
}
