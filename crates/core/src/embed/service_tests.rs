//! The embedding service over a real Unix socket, with a stand-in model that records its calls.

use super::*;
use std::sync::atomic::AtomicUsize;

/// A stand-in model: vector[0] = text length, vector[1] = 1 for queries, the rest 0; it sleeps a
/// little per call so that concurrent requests pile up, and counts texts per call.
struct Recorder {
    calls: Mutex<Vec<usize>>,
    delay: Duration,
}

impl Embedder for Recorder {
    fn model_id(&self) -> &str {
        "test/recorder"
    }
    fn dimensions(&self) -> Option<usize> {
        Some(BUILTIN_DIMENSIONS)
    }
    fn embed_with(&self, texts: &[&str], kind: InputKind, _i: Interrupt<'_>) -> Result<Vec<Vec<f32>>, EmbedError> {
        self.calls.lock().unwrap().push(texts.len());
        thread::sleep(self.delay);
        Ok(texts
            .iter()
            .map(|t| {
                let mut v = vec![0f32; BUILTIN_DIMENSIONS];
                v[0] = t.len() as f32;
                v[1] = if kind == InputKind::Query { 1.0 } else { 0.0 };
                v
            })
            .collect())
    }
}

fn loader(model: Arc<Recorder>) -> Loader {
    Box::new(move || Ok(model as Arc<dyn Embedder>))
}

fn socket(name: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("ragbench-svc-{}-{name}.sock", std::process::id()));
    let _ = std::fs::remove_file(&p);
    p
}

fn start(name: &str, delay: Duration) -> (PathBuf, Server, Arc<Recorder>) {
    let path = socket(name);
    let model = Arc::new(Recorder { calls: Mutex::new(Vec::new()), delay });
    let server = serve(UnixListener::bind(&path).unwrap(), loader(model.clone())).unwrap();
    (path, server, model)
}

#[test]
fn vectors_come_back_in_order_with_their_kind() {
    let (path, server, _) = start("order", Duration::ZERO);
    let client = ServiceEmbedder::new(&path, Duration::from_secs(5), 2);
    let v = client.embed(&["a", "bbb", "cc", "dddd", "e"], InputKind::Query).unwrap();
    assert_eq!(v.iter().map(|v| v[0]).collect::<Vec<_>>(), vec![1.0, 3.0, 2.0, 4.0, 1.0]);
    assert!(v.iter().all(|v| v[1] == 1.0 && v.len() == BUILTIN_DIMENSIONS));
    let d = client.embed(&["xy"], InputKind::Document).unwrap();
    assert_eq!((d[0][0], d[0][1]), (2.0, 0.0));
    // batch size 2: 5 texts are 3 requests
    assert_eq!(server.stats.requests.load(Ordering::SeqCst), 4);
    assert!(client.embed(&[], InputKind::Query).unwrap().is_empty());
    server.stop();
}

#[test]
fn concurrent_requests_share_model_calls() {
    let (path, server, model) = start("batching", Duration::from_millis(150));
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let path = path.clone();
            thread::spawn(move || {
                let client = ServiceEmbedder::new(&path, Duration::from_secs(10), 32);
                let text = "x".repeat(i + 1);
                let v = client.embed(&[text.as_str()], InputKind::Query).unwrap();
                assert_eq!(v[0][0], (i + 1) as f32, "each caller gets its own vector");
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let calls = model.calls.lock().unwrap().clone();
    assert_eq!(calls.iter().sum::<usize>(), 8);
    // The first request runs alone while the others arrive; they are then embedded together.
    assert!(calls.len() < 8, "8 concurrent requests took {} model calls: {calls:?}", calls.len());
    server.stop();
}

#[test]
fn oversized_and_malformed_requests_are_refused_and_the_server_goes_on() {
    let (path, server, _) = start("limits", Duration::ZERO);
    // too many texts
    let mut s = UnixStream::connect(&path).unwrap();
    let mut req = MAGIC.to_vec();
    req.push(1);
    req.extend_from_slice(&((MAX_REQUEST_TEXTS + 1) as u32).to_le_bytes());
    s.write_all(&req).unwrap();
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).unwrap();
    let refused = parse_answer(&answer).unwrap().unwrap().unwrap_err();
    assert!(refused.contains("texts in one request"), "{refused}");
    // a text claiming more bytes than allowed: refused before the bytes are read or allocated
    let mut s = UnixStream::connect(&path).unwrap();
    let mut req = MAGIC.to_vec();
    req.push(1);
    req.extend_from_slice(&1u32.to_le_bytes());
    req.extend_from_slice(&u32::MAX.to_le_bytes());
    s.write_all(&req).unwrap();
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).unwrap();
    assert!(parse_answer(&answer).unwrap().unwrap().unwrap_err().contains("bytes"));
    // not our protocol
    let mut s = UnixStream::connect(&path).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).unwrap();
    assert!(parse_answer(&answer).unwrap().unwrap().unwrap_err().contains("not an embedding service request"));
    // a client that connects and goes away
    drop(UnixStream::connect(&path).unwrap());
    assert_eq!(server.stats.refused.load(Ordering::SeqCst), 3);
    let client = ServiceEmbedder::new(&path, Duration::from_secs(5), 32);
    assert_eq!(client.embed(&["still here"], InputKind::Query).unwrap()[0][0], 10.0);
    server.stop();
}

#[test]
fn a_missing_service_is_a_clear_error_within_the_timeout() {
    let path = socket("missing");
    let client = ServiceEmbedder::new(&path, Duration::from_millis(300), 32);
    let t0 = Instant::now();
    let err = client.embed(&["q"], InputKind::Query).unwrap_err();
    assert!(t0.elapsed() >= Duration::from_millis(300) && t0.elapsed() < Duration::from_secs(3));
    let msg = err.to_string();
    assert!(msg.contains("embedding service") && msg.contains("not running"), "{msg}");
}

#[test]
fn a_service_that_starts_late_is_waited_for() {
    let path = socket("late");
    let p2 = path.clone();
    let starter = thread::spawn(move || {
        thread::sleep(Duration::from_millis(400));
        let model = Arc::new(Recorder { calls: Mutex::new(Vec::new()), delay: Duration::ZERO });
        serve(UnixListener::bind(&p2).unwrap(), loader(model)).unwrap()
    });
    let client = ServiceEmbedder::new(&path, Duration::from_secs(5), 32);
    assert_eq!(client.embed(&["late"], InputKind::Query).unwrap()[0][0], 4.0);
    starter.join().unwrap().stop();
}

#[test]
fn the_cancel_hook_runs_while_waiting_and_can_stop_the_wait() {
    let (path, server, _) = start("cancel", Duration::from_millis(1500));
    let client = ServiceEmbedder::new(&path, Duration::from_secs(10), 32);
    let calls = AtomicUsize::new(0);
    let t0 = Instant::now();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        client.embed_with(&["slow"], InputKind::Query, &|| {
            if calls.fetch_add(1, Ordering::SeqCst) >= 3 {
                panic!("cancelled");
            }
        })
    }));
    assert!(outcome.is_err(), "the hook's unwind ends the call");
    assert!(t0.elapsed() < Duration::from_millis(1000), "cancelled within a few poll steps: {:?}", t0.elapsed());
    // the server is not hurt by the client that went away
    let ok = ServiceEmbedder::new(&path, Duration::from_secs(10), 32);
    assert_eq!(ok.embed(&["ab"], InputKind::Query).unwrap()[0][0], 2.0);
    server.stop();
}

#[test]
fn a_model_that_failed_to_load_answers_every_request_with_its_error() {
    let path = socket("nomodel");
    let server = serve(UnixListener::bind(&path).unwrap(), Box::new(|| Err("model files missing at /x".into()))).unwrap();
    let client = ServiceEmbedder::new(&path, Duration::from_secs(5), 32);
    let msg = client.embed(&["q"], InputKind::Query).unwrap_err().to_string();
    assert!(msg.contains("model files missing at /x"), "{msg}");
    server.stop();
}

#[test]
fn answers_parse_only_when_complete() {
    let full = encode_answer(&Ok(vec![vec![1.0, 2.0], vec![3.0, 4.0]]));
    for cut in 0..full.len() {
        assert!(parse_answer(&full[..cut]).unwrap().is_none(), "a prefix of {cut} bytes is incomplete");
    }
    assert_eq!(parse_answer(&full).unwrap().unwrap().unwrap(), vec![vec![1.0, 2.0], vec![3.0, 4.0]]);
    assert!(parse_answer(&[7]).is_err());
    // a size that overflows is an error, not an allocation
    let mut huge = vec![0u8];
    huge.extend_from_slice(&u32::MAX.to_le_bytes());
    huge.extend_from_slice(&u32::MAX.to_le_bytes());
    assert!(parse_answer(&huge).is_err());
    let mut big = vec![0u8];
    big.extend_from_slice(&(MAX_REQUEST_TEXTS as u32 + 1).to_le_bytes());
    big.extend_from_slice(&384u32.to_le_bytes());
    assert!(parse_answer(&big).is_err(), "more vectors than a request may ask for");
}

#[test]
fn a_request_waiting_when_the_service_stops_is_sent_again_to_the_next_one() {
    let (path, server, _) = start("restart", Duration::from_millis(800));
    let call = |text: &'static str| {
        let p = path.clone();
        thread::spawn(move || ServiceEmbedder::new(&p, Duration::from_secs(10), 32).embed(&[text], InputKind::Query))
    };
    let busy = call("first"); // the model works on this one for 800 ms
    thread::sleep(Duration::from_millis(100));
    let waiting = call("second!"); // queued behind it
    thread::sleep(Duration::from_millis(100));
    let _ = std::fs::remove_file(&path);
    server.stop(); // finishes the model's current call, answers the queued request "stopping"
    let model = Arc::new(Recorder { calls: Mutex::new(Vec::new()), delay: Duration::ZERO });
    let next = serve(UnixListener::bind(&path).unwrap(), loader(model.clone())).unwrap();
    assert_eq!(busy.join().unwrap().unwrap()[0][0], 5.0, "the first service finished its call");
    assert_eq!(waiting.join().unwrap().unwrap()[0][0], 7.0);
    assert_eq!(*model.calls.lock().unwrap(), vec![1], "the next service embedded the queued request");
    next.stop();
}

#[test]
fn requests_are_split_by_count_and_by_bytes() {
    let big = "b".repeat(MAX_REQUEST_BYTES / 2 + 1);
    let texts = ["a", big.as_str(), big.as_str(), "c", "d"];
    let parts: Vec<usize> = split_requests(&texts, 2).iter().map(|p| p.len()).collect();
    assert_eq!(parts, vec![2, 2, 1], "two halves of the byte limit never share a request");
    let counts: Vec<usize> = split_requests(&["x"; 7], 3).iter().map(|p| p.len()).collect();
    assert_eq!(counts, vec![3, 3, 1]);
    assert!(split_requests(&[], 3).is_empty());
    // end to end: texts that together exceed the byte limit still come back, in order
    let (path, server, _) = start("bytes", Duration::ZERO);
    let client = ServiceEmbedder::new(&path, Duration::from_secs(20), 32);
    let v = client.embed(&[big.as_str(), "xyz", big.as_str()], InputKind::Document).unwrap();
    assert_eq!(v.iter().map(|v| v[0] as usize).collect::<Vec<_>>(), vec![big.len(), 3, big.len()]);
    // one text above the limit is a clear error at once, not a retry loop
    let huge = "h".repeat(MAX_REQUEST_BYTES + 1);
    let t0 = Instant::now();
    let msg = client.embed(&[huge.as_str()], InputKind::Document).unwrap_err().to_string();
    assert!(msg.contains("larger than the embedding service accepts") && t0.elapsed() < Duration::from_secs(2), "{msg}");
    server.stop();
}

#[test]
fn two_model_threads_share_one_model_and_answer_everyone() {
    let path = socket("two-threads");
    let loads = Arc::new(AtomicUsize::new(0));
    let model = Arc::new(Recorder { calls: Mutex::new(Vec::new()), delay: Duration::from_millis(50) });
    let (l, m) = (Arc::clone(&loads), Arc::clone(&model));
    let load: Loader = Box::new(move || {
        l.fetch_add(1, Ordering::SeqCst);
        Ok(m as Arc<dyn Embedder>)
    });
    let server = serve_with(UnixListener::bind(&path).unwrap(), load, 2).unwrap();
    let threads: Vec<_> = (0..12)
        .map(|i| {
            let path = path.clone();
            thread::spawn(move || {
                let text = "y".repeat(i + 1);
                let v = ServiceEmbedder::new(&path, Duration::from_secs(10), 32).embed(&[text.as_str()], InputKind::Query);
                assert_eq!(v.unwrap()[0][0], (i + 1) as f32);
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(loads.load(Ordering::SeqCst), 1, "the model is loaded once");
    assert_eq!(model.calls.lock().unwrap().iter().sum::<usize>(), 12);
    server.stop();
}

/// A service with two models answers each request with the model it names, loads a model only when
/// it is first asked for, and refuses a model number it does not have.
#[test]
fn each_request_is_embedded_by_the_model_it_names() {
    let path = socket("models");
    let first = Arc::new(Recorder { calls: Mutex::new(Vec::new()), delay: Duration::ZERO });
    let loaded_second = Arc::new(AtomicUsize::new(0));
    let flag = Arc::clone(&loaded_second);
    // The second model answers 8-d vectors of 7s.
    struct Sevens;
    impl Embedder for Sevens {
        fn model_id(&self) -> &str {
            "test/sevens"
        }
        fn dimensions(&self) -> Option<usize> {
            Some(8)
        }
        fn embed_with(&self, texts: &[&str], _k: InputKind, _i: Interrupt<'_>) -> Result<Vec<Vec<f32>>, EmbedError> {
            Ok(texts.iter().map(|_| vec![7.0; 8]).collect())
        }
    }
    let second: Loader = Box::new(move || {
        flag.fetch_add(1, Ordering::SeqCst);
        Ok(Arc::new(Sevens) as Arc<dyn Embedder>)
    });
    let server = serve_models(UnixListener::bind(&path).unwrap(), vec![loader(first.clone()), second], 2).unwrap();
    let a = ServiceEmbedder::new(&path, Duration::from_secs(5), 32).embed(&["abc"], InputKind::Query).unwrap();
    assert_eq!((a[0][0], a[0].len()), (3.0, BUILTIN_DIMENSIONS));
    assert_eq!(loaded_second.load(Ordering::SeqCst), 0, "the second model was loaded without a request");
    let b = ServiceEmbedder::for_model(&path, Duration::from_secs(5), 32, 1, "test/sevens", 8);
    assert_eq!(b.embed(&["abc", "de"], InputKind::Query).unwrap(), vec![vec![7.0; 8]; 2]);
    assert_eq!(loaded_second.load(Ordering::SeqCst), 1);
    let none = ServiceEmbedder::for_model(&path, Duration::from_secs(5), 32, 5, "test/none", 8);
    let err = none.embed(&["x"], InputKind::Query).unwrap_err().to_string();
    assert!(err.contains("model 5 is not one of the service's 2"), "{err}");
    assert_eq!(first.calls.lock().unwrap().iter().sum::<usize>(), 1);
    server.stop();
}

/// Chunks must be sized as the model counts, on the service path as on the backend path: with the
/// model's tokenizer the client counts word pieces (a long chemical name is many), without one it
/// falls back to the word estimate.
#[test]
fn the_client_counts_tokens_with_the_models_tokenizer() {
    let Ok(dir) = std::env::var("RAGBENCH_MODEL_DIR") else {
        println!("RAGBENCH_MODEL_DIR is not set: skipping");
        return;
    };
    let text = "Methylenetetrahydrofolate reductase polymorphisms and hyperhomocysteinemia.";
    let local = super::super::builtin::BuiltinEmbedder::load(Path::new(&dir)).unwrap();
    let client = ServiceEmbedder::new(socket("count"), Duration::from_secs(1), 32).with_tokenizer(&dir, 256);
    assert_eq!(client.count_tokens(text), local.count_tokens(text));
    assert!(client.count_tokens(text) > 10, "{}", client.count_tokens(text));
    let plain = ServiceEmbedder::new(socket("count2"), Duration::from_secs(1), 32);
    assert_eq!(plain.count_tokens(text), super::super::provider::approx_token_count(text));
}
