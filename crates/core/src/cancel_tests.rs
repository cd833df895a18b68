//! Cancel hooks (issue 9, item 2): every long-running function calls the caller's hook often
//! enough that a cancel takes effect within about a second, and a hook that unwinds stops the work
//! right there (in the extension the hook raises the pending cancel by unwinding).

use crate::chat::llm::{ChatModel, LlmConfig, OllamaChat};
use crate::chat::prompt::ChatMessage;
use crate::embed::http::{HttpConfig, OllamaEmbedder};
use crate::embed::{Embedder, InputKind};
use crate::ingest::chunk::chunk_document;
use crate::ingest::formats::extract_with;
use crate::ingest::parse::{parse_with, Section};
use crate::limits::Limits;
use std::cell::Cell;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

/// The payload of the test hooks' panic, standing in for a Postgres cancel.
const CANCELLED: &str = "cancelled by the hook";

/// A server that accepts connections and reads requests but never answers.
fn silent_server() -> (String, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let handle = std::thread::spawn(move || {
        let mut held = Vec::new();
        for mut stream in listener.incoming().take(4).flatten() {
            let mut buf = [0u8; 4096];
            let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
            let _ = stream.read(&mut buf);
            held.push(stream); // keep it open, never answer
        }
        std::thread::sleep(Duration::from_secs(3));
    });
    (url, handle)
}

/// A server that answers every request with 503 and `Retry-After: 30`.
fn busy_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    std::thread::spawn(move || {
        for mut stream in listener.incoming().take(4).flatten() {
            let mut buf = [0u8; 4096];
            let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
            let _ = stream.read(&mut buf);
            let _ = stream.write_all(
                b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 30\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbusy",
            );
        }
    });
    url
}

/// Run `f` with a hook that panics on its `n`th call; returns the calls made and how long it took.
fn cancel_after(n: usize, f: impl FnOnce(&dyn Fn())) -> (usize, Duration) {
    let calls = Cell::new(0usize);
    let hook = || {
        calls.set(calls.get() + 1);
        if calls.get() >= n {
            std::panic::panic_any(CANCELLED);
        }
    };
    let t = Instant::now();
    let r = catch_unwind(AssertUnwindSafe(|| f(&hook)));
    let el = t.elapsed();
    match r {
        Err(payload) => assert_eq!(payload.downcast_ref::<&str>(), Some(&CANCELLED), "another panic"),
        Ok(()) => panic!("the hook was not called {n} times"),
    }
    (calls.get(), el)
}

#[test]
fn http_embedding_wait_is_cancelled_within_a_poll_step() {
    let (url, _server) = silent_server();
    let mut cfg = HttpConfig::new(url, "m");
    cfg.timeout = Duration::from_secs(30);
    let e = OllamaEmbedder::new(cfg).expect("embedder");
    let (calls, el) = cancel_after(3, |hook| {
        let _ = e.embed_with(&["hello"], InputKind::Document, hook);
    });
    assert_eq!(calls, 3);
    assert!(el < Duration::from_millis(600), "took {el:?}");
}

#[test]
fn http_retry_after_wait_is_cancelled() {
    let url = busy_server();
    let mut cfg = HttpConfig::new(url, "m");
    cfg.timeout = Duration::from_secs(5);
    let e = OllamaEmbedder::new(cfg).expect("embedder");
    // The server says "come back in 30 s": the wait polls the hook every 100 ms.
    let (_, el) = cancel_after(8, |hook| {
        let _ = e.embed_with(&["hello"], InputKind::Document, hook);
    });
    assert!(el < Duration::from_secs(2), "took {el:?}");
}

#[test]
fn chat_wait_is_cancelled_within_a_poll_step() {
    let (url, _server) = silent_server();
    let mut cfg = LlmConfig::new(url, "m");
    cfg.timeout = Duration::from_secs(30);
    let m = OllamaChat::new(cfg).expect("chat");
    let messages = vec![ChatMessage { role: "user".into(), content: "hi".into() }];
    let (calls, el) = cancel_after(3, |hook| {
        let _ = m.complete_with(&messages, hook);
    });
    assert_eq!(calls, 3);
    assert!(el < Duration::from_millis(600), "took {el:?}");
}

#[test]
fn parsers_and_chunker_call_the_hook() {
    let calls = Cell::new(0usize);
    let hook = || calls.set(calls.get() + 1);
    let html = "<p>word</p>".repeat(50_000);
    parse_with("x.html", &html, None, &Limits::default(), &hook).expect("html");
    assert!(calls.get() >= 20, "html: {} calls", calls.get());

    calls.set(0);
    let md = "para\n\n".repeat(50_000);
    parse_with("x.md", &md, None, &Limits::default(), &hook).expect("markdown");
    assert!(calls.get() >= 10, "markdown: {} calls", calls.get());

    calls.set(0);
    let sections: Vec<Section> =
        (0..100).map(|i| Section { headings: vec![], text: format!("Sentence {i}. Another one.") }).collect();
    let words = |s: &str| s.split_whitespace().count();
    chunk_document(&sections, 50, 0, &words, &Limits::default(), &hook).expect("chunks");
    assert!(calls.get() >= 100, "chunker: {} calls", calls.get());

    calls.set(0);
    let pdf = crate::ingest::budget_tests::pdf_sharing_one_stream(30, "hello");
    extract_with("x.pdf", &pdf, &Limits::default(), &hook).expect("pdf");
    assert!(calls.get() >= 30, "pdf: {} calls", calls.get());
}

/// A cancel inside a third-party parser's guard is not turned into "the parser failed".
#[test]
fn cancel_inside_pdf_extraction_keeps_unwinding() {
    let pdf = crate::ingest::budget_tests::pdf_sharing_one_stream(30, "hello");
    let (calls, _) = cancel_after(5, |hook| {
        let _ = extract_with("x.pdf", &pdf, &Limits::default(), hook);
    });
    assert_eq!(calls, 5);
}

#[test]
fn cancel_stops_parsing() {
    let html = "<p>word</p>".repeat(200_000);
    let (calls, _) = cancel_after(2, |hook| {
        let _ = parse_with("x.html", &html, None, &Limits::default(), hook);
    });
    assert_eq!(calls, 2);
}
