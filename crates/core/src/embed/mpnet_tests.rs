//! Tests of the all-mpnet-base-v2 model (`mpnet.rs`). Those that need the model files run when
//! `RAGBENCH_MPNET_DIR` names its directory and are skipped (with a note) otherwise.

use super::*;
use crate::embed::builtin::tests::{
    assert_batch_equals_single, assert_corrupt_files_are_clean_errors, assert_matches_fixture,
    max_abs_diff,
};
use crate::embed::builtin::BuiltinEmbedder;
use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Instant;

const FIXTURE: &str = include_str!("../../../../tests/fixtures/mpnet_reference.json");

fn model_dir() -> Option<PathBuf> {
    match std::env::var("RAGBENCH_MPNET_DIR") {
        Ok(dir) => Some(PathBuf::from(dir)),
        Err(_) => {
            println!("RAGBENCH_MPNET_DIR is not set: skipping all-mpnet-base-v2 test");
            None
        }
    }
}

fn model() -> Option<&'static MpnetEmbedder> {
    static MODEL: OnceLock<Option<MpnetEmbedder>> = OnceLock::new();
    MODEL
        .get_or_init(|| model_dir().map(|d| MpnetEmbedder::load(&d).expect("model loads")))
        .as_ref()
}

/// A scratch directory of this test process.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ragbench-mpnet-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("mkdir");
    dir
}

#[test]
fn buckets_follow_t5_bidirectional_bucketing() {
    // relative position = key position - query position
    let cases = [
        (0, 0),
        (-1, 1),
        (-7, 7),
        (-8, 8),
        (-15, 9),
        (-16, 10),
        (-127, 15),
        (-128, 15),
        (-1000, 15),
        (1, 17),
        (7, 23),
        (16, 26),
        (127, 31),
        (383, 31),
    ];
    for (rel, bucket) in cases {
        assert_eq!(
            relative_position_bucket(rel),
            bucket,
            "relative position {rel}"
        );
    }
}

#[test]
fn missing_model_dir_is_a_clean_error() {
    let err = MpnetEmbedder::load(Path::new("/nonexistent/mpnet"))
        .err()
        .expect("error");
    assert!(matches!(err, EmbedError::ModelFiles { .. }));
    assert!(err.to_string().contains("/nonexistent/mpnet"), "{err}");
    let empty = scratch("empty");
    let err = MpnetEmbedder::load(&empty).err().expect("error");
    assert!(err.to_string().contains("config.json"), "{err}");
    let _ = std::fs::remove_dir_all(&empty);
}

/// A MiniLM (BERT, 384-d) directory given by mistake is refused on its config, before the weights
/// are read: with the real one when `RAGBENCH_MODEL_DIR` is set, else with its config.json.
#[test]
fn minilm_dir_is_a_clean_error() {
    let dir = match std::env::var("RAGBENCH_MODEL_DIR") {
        Ok(d) => PathBuf::from(d),
        Err(_) => {
            let d = scratch("minilm");
            std::fs::write(
                d.join("config.json"),
                r#"{"model_type": "bert", "hidden_size": 384, "num_attention_heads": 12,
                    "num_hidden_layers": 6, "intermediate_size": 1536, "vocab_size": 30522,
                    "max_position_embeddings": 512, "layer_norm_eps": 1e-12, "hidden_act": "gelu",
                    "pad_token_id": 0}"#,
            )
            .expect("write");
            std::fs::write(d.join("tokenizer.json"), b"{}").expect("write");
            std::fs::write(d.join("model.safetensors"), b"").expect("write");
            d
        }
    };
    let err = MpnetEmbedder::load(&dir).err().expect("error");
    assert!(matches!(err, EmbedError::ModelFiles { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("config.json") && msg.contains("384") && msg.contains("768"),
        "{msg}"
    );
}

#[test]
fn corrupt_weights_are_a_clean_error() {
    let Some(src) = model_dir() else { return };
    assert_corrupt_files_are_clean_errors(&src, "mpnet", MpnetEmbedder::load);
}

#[test]
fn matches_reference_fixture() {
    let Some(m) = model() else { return };
    assert_matches_fixture(m, FIXTURE, MPNET_DIMENSIONS, MPNET_MAX_TOKENS);
}

#[test]
fn batch_equals_single_and_preserves_order() {
    let Some(m) = model() else { return };
    assert_batch_equals_single(m, 24);
}

/// A very long text is cut at 384 tokens: what follows does not change its vector, and the
/// tokenizer only looks at the prefix the model can read (a 2 MB text embeds in about the time
/// of a 384-token one).
#[test]
fn long_text_is_truncated() {
    let Some(m) = model() else { return };
    let words = [
        "vacuum", "index", "tuple", "page", "query", "planner", "wal", "replica",
    ];
    let long: String = (0..300_000)
        .map(|i| words[(i * 7 + i / 3) % words.len()])
        .collect::<Vec<_>>()
        .join(" ");
    assert!(m.count_tokens(&long[..200_000]) > 10 * MPNET_MAX_TOKENS);
    // The first 600 words are more than 384 tokens already.
    let head: String = long.split(' ').take(600).collect::<Vec<_>>().join(" ");
    let t = Instant::now();
    let got = m
        .embed(
            &[
                long.as_str(),
                head.as_str(),
                &format!("{head} and then something else entirely"),
            ],
            InputKind::Document,
        )
        .expect("embed");
    println!("3 texts, one of {} bytes: {:?}", long.len(), t.elapsed());
    assert!(max_abs_diff(&got[0], &got[1]) < 1e-5);
    assert!(max_abs_diff(&got[0], &got[2]) < 1e-5);
}

/// One call runs as several forward passes with the cancel hook before each; a hook that
/// unwinds stops the call there, and the model works normally afterwards.
#[test]
fn interrupt_stops_between_passes() {
    let Some(m) = model() else { return };
    // 8 texts of 163 tokens: one pass each (at most BATCH_TOKENS = 192 padded tokens).
    let texts: Vec<String> = (0..8)
        .map(|i| format!("{i} {}", "PostgreSQL vacuum reclaims storage. ".repeat(16)))
        .collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let calls = Cell::new(0usize);
    let counting = || calls.set(calls.get() + 1);
    let all = m
        .embed_with(&refs, InputKind::Document, &counting)
        .expect("embed");
    let passes = calls.get();
    assert!(passes >= 4, "{passes} passes");

    const CANCELLED: &str = "cancelled by the hook";
    calls.set(0);
    let cancel_on_second = || {
        calls.set(calls.get() + 1);
        if calls.get() == 2 {
            std::panic::panic_any(CANCELLED);
        }
    };
    let t = Instant::now();
    let r = catch_unwind(AssertUnwindSafe(|| {
        m.embed_with(&refs, InputKind::Document, &cancel_on_second)
    }));
    let el = t.elapsed();
    let payload = r.expect_err("the hook's panic ends the call");
    assert_eq!(
        payload.downcast_ref::<&str>(),
        Some(&CANCELLED),
        "another panic"
    );
    // One pass ran, then the call stopped: no pass after the cancel.
    assert_eq!(calls.get(), 2);
    println!("{passes} passes in all; cancelled after one pass, in {el:?}");
    let again = m
        .embed(&refs, InputKind::Document)
        .expect("embed after a cancel");
    assert!(max_abs_diff(&again[7], &all[7]) < 1e-6);
}

#[test]
fn count_tokens_is_untruncated_wordpieces() {
    let Some(m) = model() else { return };
    assert_eq!(m.count_tokens(""), 0);
    assert_eq!(m.count_tokens("hello world"), 2);
    assert_eq!(m.count_tokens(&"database ".repeat(1000)), 1000);
    assert_eq!(m.model_id(), MPNET_MODEL_ID);
    assert_eq!(m.dimensions(), Some(MPNET_DIMENSIONS));
}

/// Speed of one model, as reported by `bench_mpnet_and_minilm`.
fn bench(name: &str, m: &dyn Embedder) {
    let query = "How do I create a partial index on a large PostgreSQL table?";
    let words = [
        "vacuum",
        "reclaims",
        "storage",
        "occupied",
        "by",
        "dead",
        "tuples",
        "and",
        "updates",
        "the",
        "visibility",
        "map",
        "so",
        "that",
        "index",
        "only",
        "scans",
        "can",
        "skip",
        "pages",
    ];
    let text = |n: usize, seed: usize| -> String {
        (0..n)
            .map(|i| words[(i * 3 + seed) % words.len()])
            .collect::<Vec<_>>()
            .join(" ")
    };
    let doc = text(200, 0);
    let time = |f: &dyn Fn(), n: usize| -> f64 {
        f();
        let t = Instant::now();
        for _ in 0..n {
            f();
        }
        t.elapsed().as_secs_f64() * 1e3 / n as f64
    };
    let q_ms = time(
        &|| drop(m.embed(&[query], InputKind::Query).expect("embed")),
        20,
    );
    let d_ms = time(
        &|| {
            drop(
                m.embed(&[doc.as_str()], InputKind::Document)
                    .expect("embed"),
            )
        },
        5,
    );
    // 64 distinct chunk-sized texts (~200 tokens with the special tokens).
    let mut n = 150;
    while m.count_tokens(&text(n, 0)) + 2 < 200 {
        n += 1;
    }
    let chunks: Vec<String> = (0..64).map(|i| format!("{i} {}", text(n, i))).collect();
    let refs: Vec<&str> = chunks.iter().map(String::as_str).collect();
    // The cancel hook's longest wait is the longest forward pass.
    let last = Cell::new(Instant::now());
    let longest = Cell::new(std::time::Duration::ZERO);
    let hook = || {
        longest.set(longest.get().max(last.get().elapsed()));
        last.set(Instant::now());
    };
    let t = Instant::now();
    m.embed_with(&refs, InputKind::Document, &hook)
        .expect("embed");
    hook();
    let secs = t.elapsed().as_secs_f64();
    let full = text(2000, 0);
    let full_ms = time(
        &|| {
            drop(
                m.embed(&[full.as_str()], InputKind::Document)
                    .expect("embed"),
            )
        },
        3,
    );
    println!(
        "{name}: short query ({} tokens) {q_ms:.1} ms; 200-word text ({} tokens) {d_ms:.1} ms; \
         64 chunks of {} tokens {:.1} texts/s ({secs:.2} s, longest pass {:?}); \
         one full-length text {full_ms:.0} ms",
        m.count_tokens(query) + 2,
        m.count_tokens(&doc) + 2,
        m.count_tokens(&chunks[0]) + 2,
        64.0 / secs,
        longest.get()
    );
}

/// Timing report of both built-in models; run with
/// `cargo test -p ragbench-core --release -- --ignored --nocapture bench_mpnet` and
/// RAGBENCH_MPNET_DIR (and RAGBENCH_MODEL_DIR for MiniLM) set.
#[test]
#[ignore]
fn bench_mpnet_and_minilm() {
    println!(
        "RAYON_NUM_THREADS={:?}",
        std::env::var("RAYON_NUM_THREADS").ok()
    );
    if let Some(m) = model() {
        bench("all-mpnet-base-v2", m);
    }
    if let Ok(dir) = std::env::var("RAGBENCH_MODEL_DIR") {
        let m = BuiltinEmbedder::load(Path::new(&dir)).expect("MiniLM loads");
        bench("all-MiniLM-L6-v2", &m);
    }
    println!(
        "RAYON_NUM_THREADS={:?}",
        std::env::var("RAYON_NUM_THREADS").ok()
    );
}
