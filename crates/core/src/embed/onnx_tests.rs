//! Tests of the int8 ONNX runtime against the float model's reference vectors. They need the model
//! folder (`RAGBENCH_MODEL_DIR`, holding `model_qint8.onnx`) and ONNX Runtime next to it, as
//! `make setup` installs them; without `RAGBENCH_MODEL_DIR` they are skipped with a message.

use super::super::builtin::tests::{cos, fixture};
use super::*;
use std::sync::OnceLock;
use std::time::Instant;

fn dir() -> Option<PathBuf> {
    match std::env::var("RAGBENCH_MODEL_DIR") {
        Ok(d) => Some(PathBuf::from(d)),
        Err(_) => {
            println!("RAGBENCH_MODEL_DIR is not set: skipping ONNX model test");
            None
        }
    }
}

fn model() -> Option<&'static OnnxEmbedder> {
    static MODEL: OnceLock<Option<OnnxEmbedder>> = OnceLock::new();
    MODEL
        .get_or_init(|| dir().map(|d| OnnxEmbedder::load(&d, &default_library(&d)).expect("int8 model loads")))
        .as_ref()
}

/// The installed model is the one with int8 products (docker/quantize_minilm.py ran): it is the one
/// loaded, and its graph multiplies with MatMulInteger.
#[test]
fn installed_model_multiplies_in_int8() {
    let Some(d) = dir() else { return };
    let file = model_file(&d).expect("an ONNX model in RAGBENCH_MODEL_DIR");
    assert_eq!(file.file_name().and_then(|f| f.to_str()), Some(ONNX_MODEL_FILES[0]));
    let bytes = std::fs::read(&file).expect("read");
    assert!(bytes.windows(13).any(|w| w == b"MatMulInteger"), "{} has no MatMulInteger node", file.display());
}

/// The quantised build is preferred, the int8-storage one is the fallback, nothing is an error.
#[test]
fn model_file_prefers_the_quantised_build() {
    let d = std::env::temp_dir().join(format!("ragbench-onnx-files-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("mkdir");
    assert_eq!(model_file(&d), None);
    std::fs::write(d.join("model_int8.onnx"), b"x").expect("write");
    assert_eq!(model_file(&d), Some(d.join("model_int8.onnx")));
    std::fs::write(d.join("model_qint8.onnx"), b"x").expect("write");
    assert_eq!(model_file(&d), Some(d.join("model_qint8.onnx")));
    std::fs::remove_dir_all(&d).ok();
}

/// int8 weights and products move each vector a little: every reference case keeps a cosine of at least 0.99 to
/// the float model's vector (sentence-transformers' own output), and the same token count (with [CLS]/[SEP],
/// truncated).
#[test]
fn int8_vectors_stay_close_to_the_float_reference() {
    let Some(m) = model() else { return };
    let cases = fixture();
    let texts: Vec<&str> = cases.iter().map(|c| c.0.as_str()).collect();
    let got = m.embed(&texts, InputKind::Document).expect("embed");
    let mut worst = 1.0f32;
    for ((text, tokens, want), v) in cases.iter().zip(&got) {
        assert_eq!(v.len(), BUILTIN_DIMENSIONS);
        let norm: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "norm {norm}");
        let c = cos(v, want);
        worst = worst.min(c);
        // The empty text is [CLS] [SEP] alone, whose two activations quantise worst (0.980 measured).
        let floor = if text.is_empty() { 0.975 } else { 0.99 };
        assert!(c >= floor, "cosine {c} to the float vector of {text:?}");
        assert_eq!((m.count_tokens(text) + 2).min(BUILTIN_MAX_TOKENS), *tokens, "{text:?}");
    }
    println!("worst cosine int8 vs float reference: {worst:.4}");
}

/// The ranking a search depends on survives quantisation.
#[test]
fn related_texts_rank_first() {
    let Some(m) = model() else { return };
    let v = m
        .embed(
            &["how do I build an index in postgres", "CREATE INDEX builds an index on a table", "the quick brown fox"],
            InputKind::Query,
        )
        .expect("embed");
    assert!(cos(&v[0], &v[1]) > cos(&v[0], &v[2]) + 0.3);
}

/// A text's vector does not depend on the texts it is sent with (one pass per text, and the
/// activations' int8 scale is computed per pass), and results come back in input order with
/// duplicates embedded once.
#[test]
fn batch_matches_single_and_keeps_order() {
    let Some(m) = model() else { return };
    let long = "Vacuum reclaims storage occupied by dead tuples. ".repeat(30);
    let texts = ["a short one", long.as_str(), "a short one", "medium length text about write-ahead logging"];
    let batch = m.embed(&texts, InputKind::Document).expect("batch");
    assert_eq!(batch.len(), 4);
    assert_eq!(batch[0], batch[2]);
    for (t, b) in texts.iter().zip(&batch) {
        let single = m.embed(&[t], InputKind::Document).expect("single").remove(0);
        assert_eq!(&single, b, "{t:?}: cosine {}", cos(&single, b));
    }
}

/// Many long texts run as several passes with the cancel hook between them, and the hook's error
/// stops the work.
#[test]
fn passes_are_interruptible() {
    let Some(m) = model() else { return };
    let texts: Vec<String> = (0..16).map(|i| format!("{i} {}", "PostgreSQL vacuum reclaims storage. ".repeat(40))).collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let calls = std::cell::Cell::new(0usize);
    let v = m.embed_with(&refs, InputKind::Document, &|| calls.set(calls.get() + 1)).expect("embed");
    assert_eq!(v.len(), 16);
    assert_eq!(calls.get(), 16, "one pass per text, the hook before each");
    let stop = || std::panic::panic_any("cancel");
    let r = catch_unwind(AssertUnwindSafe(|| m.embed_with(&refs, InputKind::Document, &stop)));
    assert!(r.is_err(), "the hook's unwind must stop the embedding");
}

#[test]
fn missing_files_are_clean_errors() {
    let Some(d) = dir() else { return };
    let err = OnnxEmbedder::load(&d, Path::new("/nonexistent/libonnxruntime.so")).err();
    // A process loads ONNX Runtime once; once loaded (by another test), the path is not read again.
    if let Some(err) = err {
        assert!(matches!(err, EmbedError::ModelFiles { .. }));
        assert!(err.to_string().contains("/nonexistent/libonnxruntime.so"), "{err}");
    }
    let empty = std::env::temp_dir().join(format!("ragbench-onnx-empty-{}", std::process::id()));
    std::fs::create_dir_all(&empty).expect("mkdir");
    std::fs::copy(d.join("tokenizer.json"), empty.join("tokenizer.json")).expect("copy");
    let err = OnnxEmbedder::load(&empty, &default_library(&d)).err().expect("no model file");
    assert!(err.to_string().contains(ONNX_MODEL_FILES[0]), "{err}");
    std::fs::write(empty.join(ONNX_MODEL_FILES[1]), b"not an onnx model").expect("write");
    let err = OnnxEmbedder::load(&empty, &default_library(&d)).err().expect("corrupt model");
    assert!(err.to_string().contains("not a usable ONNX model"), "{err}");
    std::fs::remove_dir_all(&empty).ok();
}

/// `cargo test -p ragbench-core --release onnx_bench -- --ignored --nocapture`: int8 against the
/// float model on the same texts.
#[test]
#[ignore]
fn onnx_bench() {
    let Some(d) = dir() else { return };
    let int8 = model().expect("model");
    let float = super::super::builtin::BuiltinEmbedder::load(&d).expect("float model");
    let short = "how do statins affect the risk of heart disease in older patients";
    let long = "Randomised trials of cholesterol lowering drugs report outcomes in many ways. ".repeat(20);
    let chunks: Vec<String> = (0..64).map(|i| format!("{i} {}", "Chunk text about vacuum, indexes and query plans. ".repeat(18))).collect();
    let refs: Vec<&str> = chunks.iter().map(String::as_str).collect();
    for (name, e) in [("onnx int8", int8 as &dyn Embedder), ("candle f32", &float as &dyn Embedder)] {
        let p50 = |t: &str| {
            let mut v: Vec<f64> = (0..30)
                .map(|_| {
                    let s = Instant::now();
                    e.embed(&[t], InputKind::Query).expect("embed");
                    s.elapsed().as_secs_f64() * 1e3
                })
                .collect();
            v.sort_by(|a, b| a.total_cmp(b));
            v[15]
        };
        let (ps, pl) = (p50(short), p50(&long));
        let s = Instant::now();
        e.embed(&refs, InputKind::Document).expect("embed");
        let rate = 64.0 / s.elapsed().as_secs_f64();
        let rss = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS")).map(str::to_string))
            .unwrap_or_default();
        println!("{name}: short query p50 {ps:.1} ms, 200-word p50 {pl:.1} ms, 64 chunks of ~200 tokens {rate:.1}/s ({rss})");
    }
}
