//! Tests of the HTTP embedding providers (retries, waits, errors, batching) against the test server.

use super::test_server::{recorder, resp, Req, Resp, TestServer};
use super::*;
use std::net::TcpListener;
use std::time::Instant;

/// Vector for input text "t{i}" (prefixes ignored): [i, len, 1].
fn vec_for(text: &str) -> Vec<f32> {
    let num: f32 = text.rsplit('t').next().and_then(|s| s.parse().ok()).unwrap_or(-1.0);
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
    assert_eq!(reqs.iter().map(|r| r.inputs().len()).collect::<Vec<_>>(), vec![4, 4, 2]);
    for r in &reqs {
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, "/api/embed");
        assert_eq!(r.json()["model"], "all-minilm");
        assert!(r.header("content-type").unwrap_or("").starts_with("application/json"));
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
    let out = e.embed(&["t7"], InputKind::Query).expect("429 then 200 succeeds");
    assert_eq!(out[0][0], 7.0);
    assert_eq!(*log.lock().expect("lock"), vec![Duration::from_secs(1)]);
    assert_eq!(srv.requests().len(), 2);
}

#[test]
fn retries_500_then_succeeds() {
    let srv = TestServer::start(|n, r| if n == 0 { resp(500, "boom") } else { ollama_ok(r) });
    let (log, sleeper) = recorder();
    let e = OllamaEmbedder::new(cfg(&srv.base_url(), "m")).expect("new").with_sleeper(sleeper);
    let out = e.embed(&["t1", "t2"], InputKind::Document).expect("500 then 200 succeeds");
    assert_eq!(out.len(), 2);
    let log = log.lock().expect("lock").clone();
    assert_eq!(log.len(), 1);
    assert!(log[0] >= Duration::from_millis(200) && log[0] <= Duration::from_millis(240), "{log:?}");
}

#[test]
fn gives_up_after_max_retries_on_500() {
    let srv = TestServer::start(|_, _| resp(500, r#"{"error":"model crashed"}"#));
    let (log, sleeper) = recorder();
    let e = OllamaEmbedder::new(cfg(&srv.base_url(), "m")).expect("new").with_sleeper(sleeper);
    let err = e.embed(&["t1"], InputKind::Document).expect_err("fails");
    assert_eq!(srv.requests().len(), 3, "1 attempt + 2 retries");
    assert!(matches!(err, EmbedError::RetriesExhausted { attempts: 3, .. }), "{err:?}");
    assert!(matches!(err.root(), EmbedError::HttpStatus { status: 500, .. }));
    let msg = err.to_string();
    let url = format!("{}/api/embed", srv.base_url());
    assert!(msg.contains(&url) && msg.contains("HTTP 500") && msg.contains("model crashed"), "{msg}");
    assert!(msg.contains("ollama"), "{msg}");
    let log = log.lock().expect("lock").clone();
    assert_eq!(log.len(), 2);
    assert!(log[1] >= Duration::from_millis(400) && log[1] <= Duration::from_millis(480), "{log:?}");
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
    let err = e.embed(&["t1"], InputKind::Document).expect_err("times out");
    assert!(start.elapsed() < Duration::from_millis(700));
    assert!(matches!(err, EmbedError::Timeout { .. }), "{err:?}");
    assert!(err.is_retryable());
    let msg = err.to_string();
    assert!(msg.contains("timed out") && msg.contains(&srv.base_url()), "{msg}");
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
    assert!(matches!(err.root(), EmbedError::HttpTransport { .. }), "{err:?}");
    assert_eq!(log.lock().expect("lock").len(), 1);
    assert!(err.to_string().contains(&format!("127.0.0.1:{port}/api/embed")), "{err}");
}

#[test]
fn wrong_dimension_and_count_are_errors() {
    let srv = TestServer::start(|_, r| ollama_ok(r));
    let mut c = cfg(&srv.base_url(), "m");
    c.dimensions = Some(4);
    let e = OllamaEmbedder::new(c).expect("new");
    assert_eq!(e.dimensions(), Some(4));
    let err = e.embed(&["t1"], InputKind::Document).expect_err("dim");
    assert!(matches!(err, EmbedError::DimensionMismatch { expected: 4, got: 3, .. }), "{err:?}");
    assert!(err.to_string().contains("dimension 3, expected 4"), "{err}");

    // Inconsistent dimensions within one response.
    let srv = TestServer::start(|_, _| resp(200, r#"{"embeddings":[[1,2,3],[1,2]]}"#));
    let e = OllamaEmbedder::new(cfg(&srv.base_url(), "m")).expect("new");
    let err = e.embed(&["a", "b"], InputKind::Document).expect_err("dim");
    assert!(matches!(err, EmbedError::DimensionMismatch { expected: 3, got: 2, .. }), "{err:?}");

    // Fewer vectors than inputs.
    let srv = TestServer::start(|_, _| resp(200, r#"{"embeddings":[[1,2,3]]}"#));
    let e = OllamaEmbedder::new(cfg(&srv.base_url(), "m")).expect("new");
    let err = e.embed(&["a", "b"], InputKind::Document).expect_err("count");
    assert!(matches!(err, EmbedError::CountMismatch { expected: 2, got: 1, .. }), "{err:?}");
    assert!(err.to_string().contains("ollama/m returned 1 embeddings for 2 inputs"), "{err}");
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
    assert!(matches!(err, EmbedError::MalformedResponse { .. }), "{err:?}");
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
        resp(401, json!({"error": {"message": format!("Incorrect API key provided: {auth}")}}).to_string())
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
    assert_eq!(reqs[0].header("authorization"), Some(format!("Bearer {KEY}").as_str()));
    assert!(matches!(err, EmbedError::HttpStatus { status: 401, .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("HTTP 401") && msg.contains("/v1/embeddings") && msg.contains("openai"), "{msg}");
    assert!(!msg.contains(KEY) && !format!("{err:?}").contains(KEY), "{msg}");
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
    assert_eq!(reqs[0].inputs(), vec!["search_document: t1", "search_document: t2"]);
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
        resp(
            200,
            json!({"object": "list", "data": data, "model": "x", "usage": {"prompt_tokens": 1, "total_tokens": 1}})
                .to_string(),
        )
    });
    for base in [srv.base_url(), format!("{}/", srv.base_url()), format!("{}/v1", srv.base_url())] {
        let mut c = cfg(&base, "text-embedding-3-small");
        c.batch_size = 3;
        let e = OpenAiEmbedder::new(c).expect("new");
        assert_eq!(e.model_id(), "openai/text-embedding-3-small");
        let t = texts(7);
        let out = e.embed(&refs(&t), InputKind::Document).expect("embed");
        assert_eq!(out.iter().map(|v| v[0] as usize).collect::<Vec<_>>(), (0..7).collect::<Vec<_>>());
        assert_eq!(e.dimensions(), Some(3));
    }
    let reqs = srv.requests();
    assert_eq!(reqs.len(), 9);
    assert!(reqs.iter().all(|r| r.path == "/v1/embeddings" && r.inputs().len() <= 3));
    assert!(reqs.iter().all(|r| r.header("authorization").is_none()));
}

#[test]
fn openai_bad_indices_are_malformed() {
    let srv = TestServer::start(|_, _| {
        resp(200, r#"{"data":[{"index":0,"embedding":[1,2]},{"index":0,"embedding":[3,4]}]}"#)
    });
    let e = OpenAiEmbedder::new(cfg(&srv.base_url(), "m")).expect("new");
    let err = e.embed(&["a", "b"], InputKind::Document).expect_err("dup");
    assert!(err.to_string().contains("duplicate embedding index 0"), "{err}");
}

#[test]
fn config_errors() {
    let mut c = cfg("http://localhost:11434", "m");
    c.batch_size = 0;
    assert!(matches!(OllamaEmbedder::new(c), Err(EmbedError::Config { .. })));
    for bad in ["localhost:11434", "ftp://example.com", "", "http://"] {
        let r = OllamaEmbedder::new(cfg(bad, "m"));
        assert!(matches!(r, Err(EmbedError::Config { .. })), "{bad}");
    }
    assert!(matches!(OpenAiEmbedder::new(cfg("http://x", " ")), Err(EmbedError::Config { .. })));
}

/// reqwest's I/O thread must not take Postgres' signals.
#[cfg(target_os = "linux")]
#[test]
fn client_thread_blocks_signals() {
    let e = OllamaEmbedder::new(cfg("http://127.0.0.1:9", "m")).expect("new");
    let mut found = 0;
    for task in std::fs::read_dir("/proc/self/task").expect("proc").flatten() {
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
            assert!(mask & (1u64 << (sig - 1)) != 0, "signal {sig} not blocked: {blk}");
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
    assert_eq!(parse_retry_after("0.5", now), Some(Duration::from_millis(500)));
    assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now), Some(Duration::from_secs(10)));
    assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now), Some(Duration::ZERO));
    assert_eq!(parse_retry_after("Thu, 22 Oct 2015 07:28:00 GMT", now), Some(MAX_RETRY_AFTER));
    assert_eq!(parse_retry_after("soon", now), None);
    assert_eq!(parse_retry_after("-1", now), None);
    assert_eq!(parse_retry_after("inf", now), None);
    assert_eq!(parse_retry_after("Wed, 21 Oct 99999999999999 07:28:10 GMT", now), None);
    assert_eq!(parse_retry_after("Wed, 21 Foo 2015 07:28:10 GMT", now), None);
    assert_eq!(parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
    assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"), Some(784111777));
}

#[test]
fn backoff_grows_and_is_capped() {
    for n in 1..=40 {
        let b = backoff(n);
        let base = (200u64 << (n - 1).min(20)).min(10_000);
        assert!(b >= Duration::from_millis(base) && b <= Duration::from_millis(base * 12 / 10), "{n} {b:?}");
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
    assert!(matches!(err.root(), EmbedError::HttpStatus { status: 429, .. }), "{err:?}");
    assert!(err.to_string().contains("HTTP 429 Too Many Requests"), "{err}");
}
