//! Embedding providers behind one interface (`provider::Embedder`), chosen by GUCs:
//! `builtin` (offline all-MiniLM-L6-v2, in ONNX Runtime or candle, or all-mpnet-base-v2 in candle),
//! `ollama`, `openai` (any OpenAI-compatible server).
//!
//! This file is the Postgres-facing glue: it reads the settings, keeps one embedder per backend
//! process (the built-in model is loaded once, never per call), and turns provider errors into
//! Postgres errors. The providers themselves live in `ragbench_core::embed` and never call Postgres.

pub use ragbench_core::embed::{builtin, http, mpnet, onnx, provider};
pub mod service;

use crate::errors;
use crate::guc;
use once_cell::sync::Lazy;
use pgrx::prelude::*;
pub use provider::{EmbedError, Embedder, InputKind};
use std::ffi::CStr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The embedder of this backend and the settings it was built from.
static CURRENT: Lazy<Mutex<Option<(String, Arc<dyn Embedder>)>>> = Lazy::new(|| Mutex::new(None));

/// `$sharedir/ragbench`, where `make setup` and the Docker image put the model files and ONNX Runtime.
fn share_dir() -> PathBuf {
    let mut buf = [0 as std::ffi::c_char; pg_sys::MAXPGPATH as usize];
    // SAFETY: my_exec_path is set by the postmaster; get_share_path writes at most MAXPGPATH bytes.
    let share = unsafe {
        pg_sys::get_share_path(std::ptr::addr_of!(pg_sys::my_exec_path).cast(), buf.as_mut_ptr());
        CStr::from_ptr(buf.as_ptr()).to_string_lossy().into_owned()
    };
    PathBuf::from(share).join("ragbench")
}

/// The built-in model's folder: `rag.model_dir`, or `$sharedir/ragbench/all-MiniLM-L6-v2`.
pub fn model_dir() -> PathBuf {
    guc::string(&guc::MODEL_DIR).map(PathBuf::from).unwrap_or_else(|| share_dir().join("all-MiniLM-L6-v2"))
}

/// The quality option of the built-in provider (`rag.embedding_model = 'all-mpnet-base-v2'`).
pub const MPNET: &str = "all-mpnet-base-v2";

/// all-mpnet-base-v2's folder: `$sharedir/ragbench/all-mpnet-base-v2` (`make setup`, docker/install-mpnet.sh).
pub fn mpnet_dir() -> PathBuf {
    share_dir().join(MPNET)
}

/// all-mpnet-base-v2 from `dir`, loaded in this process (a backend, or the service's model thread).
pub fn load_mpnet(dir: &std::path::Path) -> Result<Arc<dyn Embedder>, EmbedError> {
    Ok(Arc::new(mpnet::MpnetEmbedder::load(dir)?))
}

/// What runs the built-in model, from `rag.builtin_runtime` (`auto`: ONNX when its files are there).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Runtime {
    Onnx,
    Candle,
}

/// `rag.builtin_runtime`, lower-cased.
pub fn runtime_setting() -> String {
    guc::string(&guc::BUILTIN_RUNTIME).unwrap_or_else(|| "auto".into()).to_lowercase()
}

/// The runtime a `rag.builtin_runtime` value names (`None`: auto); an unknown value is `Err(value)`.
/// Cheap: checked on every use of the settings.
pub fn parse_runtime(setting: &str) -> Result<Option<Runtime>, String> {
    match setting {
        "onnx" => Ok(Some(Runtime::Onnx)),
        "candle" => Ok(Some(Runtime::Candle)),
        "auto" => Ok(None),
        _ => Err(setting.to_string()),
    }
}

/// The runtime to load the built-in model with (auto: ONNX when its files are there), and the ONNX
/// Runtime library it opens (`rag.onnxruntime_library`). Looks at files: called when a model is loaded.
pub fn resolve_runtime(choice: Option<Runtime>, model_dir: &std::path::Path) -> (Runtime, PathBuf) {
    let library = guc::string(&guc::ONNXRUNTIME_LIBRARY)
        .map(PathBuf::from)
        .unwrap_or_else(|| share_dir().join("onnxruntime").join("libonnxruntime.so"));
    let runtime = choice.unwrap_or(if library.is_file() && onnx::model_file(model_dir).is_some() {
        Runtime::Onnx
    } else {
        Runtime::Candle
    });
    (runtime, library)
}

/// Load the built-in model with the runtime the settings choose (in a backend, or in the service), for
/// `parallel` callers at once (the service's model threads; 1 in a backend).
pub fn load_builtin(
    model_dir: &std::path::Path,
    runtime: Runtime,
    library: &std::path::Path,
    parallel: usize,
) -> Result<Arc<dyn Embedder>, EmbedError> {
    Ok(match runtime {
        Runtime::Onnx => Arc::new(onnx::OnnxEmbedder::load_parallel(model_dir, library, parallel)?),
        Runtime::Candle => Arc::new(builtin::BuiltinEmbedder::load(model_dir)?),
    })
}

/// The settings that decide which embedder to use; a change of any of them builds a new one.
struct Settings {
    provider: String,
    model: Option<String>,
    url: Option<String>,
    api_key: Option<String>,
    timeout_ms: i32,
    max_retries: i32,
    batch_size: i32,
    model_dir: PathBuf,
    /// What runs the built-in model in this backend (`None`: auto, resolved when it is loaded), and the
    /// ONNX Runtime library setting.
    runtime: Option<Runtime>,
    onnx_library: Option<String>,
    /// The built-in model through the shared service (`service.rs`) rather than in this backend.
    via_service: bool,
}

impl Settings {
    fn read() -> Self {
        Settings {
            provider: configured_provider(),
            model: guc::string(&guc::EMBEDDING_MODEL),
            url: guc::string(&guc::EMBEDDING_URL),
            api_key: crate::secrets::api_key(
                &guc::EMBEDDING_URL,
                &guc::EMBEDDING_API_KEY_FILE,
                "rag.embedding_url",
                "rag.embedding_api_key_file",
            ),
            timeout_ms: crate::secrets::capped_timeout_ms(guc::EMBEDDING_TIMEOUT_MS.get()) as i32,
            max_retries: crate::secrets::capped_retries(guc::EMBEDDING_MAX_RETRIES.get()) as i32,
            batch_size: crate::secrets::capped_batch_size() as i32,
            runtime: parse_runtime(&runtime_setting()).unwrap_or_else(|other| {
                errors::invalid(
                    format!("unknown rag.builtin_runtime '{other}'"),
                    "Set rag.builtin_runtime to auto, onnx or candle.",
                )
            }),
            onnx_library: guc::string(&guc::ONNXRUNTIME_LIBRARY),
            model_dir: model_dir(),
            via_service: service::in_use(),
        }
    }

    /// Cache key. The API key enters only as a hash, so it never sits in memory twice.
    fn key(&self) -> String {
        let key_hash = self.api_key.as_deref().map(|k| ragbench_core::ingest::content_hash(k.as_bytes()));
        format!(
            "{}|{:?}|{:?}|{:?}|{}|{}|{}|{}|{:?}|{:?}|{}",
            self.provider,
            self.model,
            self.url,
            key_hash,
            self.timeout_ms,
            self.max_retries,
            self.batch_size,
            self.model_dir.display(),
            self.runtime,
            self.onnx_library,
            self.via_service
        )
    }

    /// The model this provider will use: the setting, or the provider's default.
    fn effective_model(&self) -> &str {
        effective_model(&self.provider, self.model.as_deref())
    }

    fn build(&self) -> Result<Arc<dyn Embedder>, EmbedError> {
        let http_config = |default_url: &str| http::HttpConfig {
            base_url: self.url.clone().unwrap_or_else(|| default_url.to_string()),
            model: self.effective_model().to_string(),
            api_key: self.api_key.clone(),
            timeout: Duration::from_millis(self.timeout_ms.max(1) as u64),
            max_retries: self.max_retries.max(0) as u32,
            batch_size: self.batch_size.max(1) as usize,
            dimensions: None,
        };
        match self.provider.as_str() {
            "builtin" => {
                let quality = match self.model.as_deref() {
                    None | Some("all-MiniLM-L6-v2") | Some(builtin::BUILTIN_MODEL_ID) => false,
                    Some(MPNET) | Some(mpnet::MPNET_MODEL_ID) => true,
                    Some(m) => errors::invalid(
                        format!("rag.embedding_model = '{m}' is not available with rag.embedding_provider = 'builtin'"),
                        "The built-in provider has all-MiniLM-L6-v2 (the default) and all-mpnet-base-v2 \
                         (installed by make setup): RESET rag.embedding_model, or choose the ollama or openai provider.",
                    ),
                };
                if self.via_service {
                    let timeout = Duration::from_millis(self.timeout_ms.max(1) as u64);
                    return Ok(service::client(timeout, self.batch_size.max(1) as usize, quality));
                }
                if quality {
                    return load_mpnet(&mpnet_dir());
                }
                let (runtime, library) = resolve_runtime(self.runtime, &self.model_dir);
                load_builtin(&self.model_dir, runtime, &library, 1)
            }
            "ollama" => Ok(Arc::new(http::OllamaEmbedder::new(http_config("http://127.0.0.1:11434"))?)),
            "openai" => Ok(Arc::new(http::OpenAiEmbedder::new(http_config("https://api.openai.com"))?)),
            other => errors::invalid(
                format!("unknown rag.embedding_provider '{other}'"),
                "Set rag.embedding_provider to builtin, ollama or openai.",
            ),
        }
    }
}

/// The embedder configured for this session, built on first use and kept for the process lifetime.
pub fn current() -> Arc<dyn Embedder> {
    let settings = Settings::read();
    // Checked on every use, not only when an embedder is built: the list may change on reload.
    crate::secrets::require_allowed(
        &guc::ALLOWED_EMBEDDING_MODELS,
        "rag.allowed_embedding_models",
        &settings.provider,
        settings.effective_model(),
    );
    let key = settings.key();
    let mut slot = CURRENT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some((k, e)) = slot.as_ref() {
        if *k == key {
            return Arc::clone(e);
        }
    }
    match settings.build() {
        Ok(e) => {
            *slot = Some((key, Arc::clone(&e)));
            e
        }
        Err(err) => {
            drop(slot);
            report(err)
        }
    }
}

/// `rag.embedding_provider`, lower-cased.
fn configured_provider() -> String {
    guc::string(&guc::EMBEDDING_PROVIDER).unwrap_or_else(|| "builtin".into()).to_lowercase()
}

/// The model a provider uses: the setting, or the provider's default (the built-in provider has one).
fn effective_model<'a>(provider: &str, model: Option<&'a str>) -> &'a str {
    match (provider, model) {
        ("builtin", Some(MPNET | mpnet::MPNET_MODEL_ID)) => MPNET,
        ("builtin", _) => "all-MiniLM-L6-v2",
        (_, Some(m)) => m,
        ("ollama", None) => "nomic-embed-text",
        ("openai", None) => "text-embedding-3-small",
        (_, None) => "all-MiniLM-L6-v2",
    }
}

/// `provider/model`, the id stored with each vector, of the configured embedder, without building it
/// (no model is loaded, no key file read). SQL: `rag.embedding_model_id()`, created in
/// sql/ragbench--0.3.0--0.4.0.sql.
#[pg_extern(sql = false)]
fn embedding_model_id() -> String {
    let provider = configured_provider();
    let model = guc::string(&guc::EMBEDDING_MODEL);
    format!("{provider}/{}", effective_model(&provider, model.as_deref()))
}

/// Turn a provider error into a Postgres error with a hint that fits its cause.
pub fn report(err: EmbedError) -> ! {
    let hint = match &err {
        EmbedError::ModelFiles { .. } => {
            "Run `make setup` (or docker/install-extras.sh) to install the built-in model, or set rag.model_dir."
        }
        EmbedError::Service { .. } => {
            "The built-in model runs in the ragbench embedding service (a background process of this server, \
             restarted by the postmaster within seconds): see the server log. A superuser can SET \
             rag.embedding_mode = 'backend' to load the model in the backend instead."
        }
        _ => "Check rag.embedding_provider, rag.embedding_url and rag.embedding_model, and that the server is up.",
    };
    errors::external(format!("embedding failed: {err}"), hint)
}

/// Embed texts with the configured provider, raising a Postgres error on failure.
pub fn embed_texts(embedder: &dyn Embedder, texts: &[&str], kind: InputKind) -> Vec<Vec<f32>> {
    match embedder.embed_with(texts, kind, &errors::interrupt) {
        Ok(v) => v,
        Err(e) => report(e),
    }
}

/// Embed a text with the configured provider, as a search query (the default) or as a document.
/// Returns a `real[]`; `rag.embed` wraps it as a pgvector `vector`.
#[pg_extern(parallel_unsafe)]
fn embed_array(input: &str, kind: default!(&str, "'query'")) -> Vec<f32> {
    let kind = parse_kind(kind);
    let embedder = current();
    embed_texts(embedder.as_ref(), &[input], kind).pop().unwrap_or_default()
}

/// Embed many texts in batches of `rag.embedding_batch_size` (as ingestion does); one row per input,
/// in input order. `rag.embed_many` wraps the arrays as pgvector vectors.
#[pg_extern(parallel_unsafe)]
fn embed_arrays(
    inputs: Vec<Option<String>>,
    kind: default!(&str, "'query'"),
) -> TableIterator<'static, (name!(ordinality, i32), name!(embedding, Vec<f32>))> {
    let kind = parse_kind(kind);
    let texts: Vec<&str> = inputs
        .iter()
        .enumerate()
        .map(|(i, t)| match t {
            Some(t) => t.as_str(),
            None => errors::invalid(format!("inputs[{}] is NULL", i + 1), "Remove NULL elements from the array."),
        })
        .collect();
    let embedder = current();
    let batch = crate::secrets::capped_batch_size();
    let mut rows = Vec::with_capacity(texts.len());
    for group in texts.chunks(batch) {
        crate::interrupts::check();
        for v in embed_texts(embedder.as_ref(), group, kind) {
            rows.push((rows.len() as i32 + 1, v));
        }
    }
    TableIterator::new(rows)
}

fn parse_kind(kind: &str) -> InputKind {
    match kind {
        "query" => InputKind::Query,
        "document" => InputKind::Document,
        other => errors::invalid(
            format!("unknown input kind '{other}'"),
            "Use 'query' for search text or 'document' for passages.",
        ),
    }
}

extension_sql!(
    r#"
CREATE FUNCTION rag.embed_many(inputs text[], kind text DEFAULT 'query')
RETURNS TABLE (ordinality int, embedding vector)
LANGUAGE sql STRICT PARALLEL UNSAFE
AS $$ SELECT e.ordinality, e.embedding::vector FROM rag.embed_arrays(inputs, kind) e $$;
COMMENT ON FUNCTION rag.embed_many(text[], text) IS
  'Embeddings of many texts, batched like ingestion (rag.embedding_batch_size): one row per input, in order.';
"#,
    name = "embed_many_sql",
    requires = [embed_arrays]
);

extension_sql!(
    r#"
CREATE FUNCTION rag.embed(input text, kind text DEFAULT 'query') RETURNS vector
LANGUAGE sql STRICT PARALLEL UNSAFE
AS $$ SELECT rag.embed_array(input, kind)::vector $$;
COMMENT ON FUNCTION rag.embed(text, text) IS
  'Embedding of a text with the configured provider (rag.embedding_provider), as a pgvector vector.';
"#,
    name = "embed_sql",
    requires = [embed_array]
);
