//! Document ingestion: parse → chunk → embed → store, in the caller's transaction.
//!
//! Formats, parsing and chunking are pure code in `ragbench_core::ingest`; `store.rs` writes rows; this file holds the SQL API
//! (`rag.ingest_document`, `rag.delete_document`) and the checks on user input.

pub mod staged;
pub mod store;

pub use ragbench_core::ingest::{chunk, content_hash, formats, parse, plan_batches, Span};

use crate::embed::{self, InputKind};
use crate::errors;
use crate::guc;
use crate::jsonb_arg::JsonbArg;
use pgrx::prelude::*;
use pgrx::Uuid;
use std::borrow::Cow;
use std::sync::Arc;
use ragbench_core::limits::{check_metadata_budget, LimitExceeded, Limits};

/// Longest file name accepted (characters); matches the CHECK constraint on rag.document_files.
pub const MAX_FILE_NAME_CHARS: usize = 1024;

/// A document ready to be written: parsed, chunked and embedded, nothing stored yet.
#[derive(Clone)]
pub struct PreparedDocument {
    pub file_name: String,
    pub file_type: &'static str,
    pub title: Option<String>,
    pub size_bytes: i64,
    pub hash: String,
    pub metadata: serde_json::Value,
    pub chunks: Vec<PreparedChunk>,
    pub model: String,
    pub dimensions: usize,
    /// Whose document this is: None for the caller (synchronous ingest), the uploader's role and tenant
    /// for a queued file (the worker writes on the uploader's behalf).
    pub owner: Option<String>,
    pub tenant: Option<String>,
}

#[derive(Clone)]
pub struct PreparedChunk {
    pub index: i32,
    pub content: String,
    /// The title and headings put before the content for embedding and BM25 ("" for none). Shared by
    /// the chunks of a section, so that a document's text is held once, not twice.
    pub context: Arc<str>,
    /// The heading path recorded as `section` in the chunk's metadata ("" for none; shared likewise).
    pub section: Arc<str>,
    pub token_count: i32,
    pub embedding: Vec<f32>,
}

impl PreparedChunk {
    /// The text that is embedded and indexed for BM25: the context, a blank line, the content.
    pub fn content_with_context(&self) -> Cow<'_, str> {
        if self.context.is_empty() {
            Cow::Borrowed(&self.content)
        } else {
            Cow::Owned(format!("{}\n\n{}", self.context, self.content))
        }
    }

    /// The chunk's metadata: the document's, plus its `section` unless the document sets one.
    pub fn metadata(&self, document: &serde_json::Value) -> serde_json::Value {
        let mut meta = document.clone();
        if let (Some(obj), false) = (meta.as_object_mut(), self.section.is_empty()) {
            obj.entry("section").or_insert_with(|| serde_json::Value::String(self.section.to_string()));
        }
        meta
    }
}

/// The budgets of one document, from the settings: text `rag.max_document_bytes` (XML and PDF
/// content 4 times that), `rag.max_chunks_per_document`, `rag.max_nesting_depth`,
/// `rag.max_metadata_bytes`.
pub fn limits() -> Limits {
    Limits {
        max_chunks: guc::MAX_CHUNKS_PER_DOCUMENT.get().max(1) as usize,
        max_nesting_depth: guc::MAX_NESTING_DEPTH.get().max(1) as usize,
        max_metadata_bytes: guc::MAX_METADATA_BYTES.get().max(0) as usize,
        ..Limits::with_text_bytes(guc::MAX_DOCUMENT_BYTES.get().max(0) as usize)
    }
}

/// A document's metadata argument, refused (like the document) when over its size or nesting budget.
pub fn read_metadata(file_name: &str, metadata: &JsonbArg) -> serde_json::Value {
    metadata.parse("document metadata", &limits()).unwrap_or_else(|e| refuse(file_name, &e))
}

/// Refuse a document over one of its budgets: SQLSTATE 22023, the limit and the setting in the
/// message, what to do in the hint. Nothing has been stored.
pub fn refuse(file_name: &str, e: &LimitExceeded) -> ! {
    let hint = if e.setting.starts_with("rag.") {
        format!("Nothing was stored. Split the document, or have a superuser raise {}.", e.setting)
    } else {
        "Nothing was stored. Split the document.".to_string()
    };
    errors::invalid(format!("cannot ingest '{}': {e}", short(file_name)), hint)
}

/// Detect the format of a file's bytes and extract its text within [`limits`]; raises on bad input.
pub fn extract(file_name: &str, bytes: &[u8]) -> formats::Extracted {
    match formats::extract_with(file_name, bytes, &limits(), &errors::interrupt) {
        Ok(x) => x,
        Err(formats::FormatError::Limit { limit, .. }) => refuse(file_name, &limit),
        Err(e) => errors::invalid(
            format!("cannot ingest '{}': {e}", short(file_name)),
            "Supported: PDF with a text layer, DOCX, HTML, Markdown and UTF-8/UTF-16 text.",
        ),
    }
}

/// Validate the caller's arguments; raises an error naming the bad value.
pub fn check_arguments(file_name: &str, size: usize, metadata: &serde_json::Value) {
    let name = file_name.trim();
    if name.is_empty() {
        errors::invalid("file_name must not be empty", "Pass the document's file name, e.g. 'guide.md'.");
    }
    let chars = name.chars().count();
    if chars > MAX_FILE_NAME_CHARS {
        errors::invalid(
            format!("file_name is {chars} characters long; the limit is {MAX_FILE_NAME_CHARS}"),
            "Pass the base name of the file and put longer paths into metadata.",
        );
    }
    if !metadata.is_object() {
        errors::invalid(
            format!("metadata must be a JSON object, got {}", json_kind(metadata)),
            "Pass metadata as '{\"key\": \"value\"}'::jsonb.",
        );
    }
    if let Err(e) = check_metadata_budget(metadata.to_string().len(), 0, &limits()) {
        refuse(name, &e);
    }
    let max = guc::MAX_DOCUMENT_BYTES.get().max(0) as usize;
    if size > max {
        errors::invalid(
            format!("document '{name}' is {size} bytes; rag.max_document_bytes allows {max}"),
            "Split the document, or have a superuser raise rag.max_document_bytes.",
        );
    }
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// Parse and chunk a text document (no embedding yet). Raises a clear error for content that
/// yields no text. `format` forces a format (text extracted from PDF/DOCX); `None` detects it.
pub fn chunk_text(
    file_name: &str,
    text: &str,
    format: Option<parse::DocFormat>,
    file_type: Option<&'static str>,
    size_bytes: usize,
    hash: String,
    metadata: serde_json::Value,
) -> PreparedDocument {
    let limits = limits();
    let parsed = match parse::parse_with(file_name, text, format, &limits, &errors::interrupt) {
        Ok(p) => p,
        Err(parse::ParseError::Limit(e)) => refuse(file_name, &e),
        Err(e) => errors::invalid(
            format!("cannot ingest '{}': {e}", short(file_name)),
            "Pass the document's text (plain text, Markdown or HTML), or a PDF or DOCX file as bytea.",
        ),
    };
    let chunk_size = guc::CHUNK_SIZE.get().max(1) as usize;
    let overlap = guc::CHUNK_OVERLAP.get().max(0) as usize;
    if overlap >= chunk_size {
        errors::invalid(
            format!("rag.chunk_overlap ({overlap}) must be smaller than rag.chunk_size ({chunk_size})"),
            "Lower rag.chunk_overlap or raise rag.chunk_size.",
        );
    }
    let embedder = embed::current();
    let count = |s: &str| embedder.count_tokens(s);
    let title = parsed.title.clone();
    let chunks = match chunk::chunk_document(&parsed.sections, chunk_size, overlap, &count, &limits, &errors::interrupt) {
        Ok(c) => c,
        Err(e) => refuse(file_name, &e),
    };
    // The document's metadata is copied into every chunk.
    if let Err(e) = check_metadata_budget(metadata.to_string().len(), chunks.len(), &limits) {
        refuse(file_name, &e);
    }
    let parsed_format = parsed.format.as_str();
    drop(parsed); // its text is in the chunks now
    // Consecutive chunks of one section share their context and section strings.
    let (mut context, mut section): (Arc<str>, Arc<str>) = (Arc::from(""), Arc::from(""));
    let mut last_headings: Option<Vec<String>> = None;
    let chunks = chunks
        .into_iter()
        .map(|c| {
            if last_headings.as_ref() != Some(&c.headings) {
                context = Arc::from(chunk::context_prefix(title.as_deref(), &c.headings));
                section = Arc::from(c.headings.join(" > "));
                last_headings = Some(c.headings);
            }
            PreparedChunk {
                index: c.index as i32,
                token_count: count(&c.content) as i32,
                content: c.content,
                context: context.clone(),
                section: section.clone(),
                embedding: Vec::new(),
            }
        })
        .collect();
    PreparedDocument {
        file_name: file_name.trim().to_string(),
        file_type: file_type.unwrap_or(parsed_format),
        title,
        size_bytes: size_bytes as i64,
        hash,
        metadata,
        chunks,
        model: embedder.model_id().to_string(),
        dimensions: embedder.dimensions().unwrap_or(0),
        owner: None,
        tenant: None,
    }
}

/// Embed the text-with-context of the chunks named by `spans` (of any of `docs`) in one provider
/// call. Provider errors are returned, not raised, so that the caller decides (the worker records
/// them on the tasks).
pub fn embed_spans(docs: &mut [PreparedDocument], spans: &[Span]) -> Result<(), embed::EmbedError> {
    let embedder = embed::current();
    let owned: Vec<Cow<'_, str>> = spans
        .iter()
        .flat_map(|s| docs[s.doc].chunks[s.range.clone()].iter().map(PreparedChunk::content_with_context))
        .collect();
    let texts: Vec<&str> = owned.iter().map(|t| t.as_ref()).collect();
    let expected = texts.len();
    let vectors = embedder.embed_with(&texts, InputKind::Document, &errors::interrupt);
    drop(texts);
    drop(owned);
    let vectors = vectors?;
    if vectors.len() != expected {
        return Err(embed::EmbedError::CountMismatch {
            model: embedder.model_id().to_string(),
            expected,
            got: vectors.len(),
        });
    }
    let mut vectors = vectors.into_iter();
    for s in spans {
        let doc = &mut docs[s.doc];
        for (c, v) in doc.chunks[s.range.clone()].iter_mut().zip(vectors.by_ref()) {
            c.embedding = v;
        }
        doc.model = embedder.model_id().to_string();
        doc.dimensions = doc.chunks.iter().map(|c| c.embedding.len()).find(|d| *d > 0).unwrap_or(0);
    }
    Ok(())
}

/// Embed chunks `range` of one document (see `embed_spans`).
pub fn embed_range(doc: &mut PreparedDocument, range: std::ops::Range<usize>) -> Result<(), embed::EmbedError> {
    embed_spans(std::slice::from_mut(doc), &[Span { doc: 0, range }])
}

/// Batches of `rag.embedding_batch_size` chunks of one document, as index ranges.
pub fn embedding_batches(doc: &PreparedDocument) -> Vec<std::ops::Range<usize>> {
    let batch = crate::secrets::capped_batch_size();
    plan_batches(&[doc.chunks.len()], batch).into_iter().flatten().map(|s| s.range).collect()
}

/// Embed all chunks, raising a Postgres error on failure.
pub fn embed_all(doc: &mut PreparedDocument) {
    for range in embedding_batches(doc) {
        crate::interrupts::check();
        if let Err(e) = embed_range(doc, range) {
            embed::report(e);
        }
    }
}

/// Parse, chunk and embed a text document; raises on any failure.
pub fn prepare_text(file_name: &str, text: &str, size_bytes: usize, hash: String, metadata: serde_json::Value) -> PreparedDocument {
    let mut doc = chunk_text(file_name, text, None, None, size_bytes, hash, metadata);
    embed_all(&mut doc);
    doc
}

/// At most 80 characters of a file name, for error messages.
pub fn short(name: &str) -> String {
    let mut s: String = name.chars().take(80).collect();
    if name.chars().count() > 80 {
        s.push('…');
    }
    s
}

/// Ingest a text document synchronously: parse (plain text, Markdown, HTML), chunk, embed and store it
/// in the caller's transaction. The same content again returns the same document id and adds nothing.
#[pg_extern(parallel_unsafe)]
fn ingest_document(file_name: &str, content: &str, metadata: default!(JsonbArg, "'{}'")) -> Uuid {
    crate::read::require_primary("rag.ingest_document");
    let metadata = read_metadata(file_name, &metadata);
    check_arguments(file_name, content.len(), &metadata);
    let hash = content_hash(content.as_bytes());
    store::lock_hash(&hash);
    if let Some(existing) = store::find_by_hash(&hash, None, None) {
        return existing;
    }
    let doc = prepare_text(file_name, content, content.len(), hash, metadata);
    store::insert_document(doc)
}

/// Delete a document and its chunks. Returns false when no document has that id.
#[pg_extern(parallel_unsafe)]
fn delete_document(document_id: Uuid) -> bool {
    crate::read::require_primary("rag.delete_document");
    store::delete_document(document_id)
}

/// Embed the chunks whose vector is missing or was made by another model with the configured model,
/// so that switching `rag.embedding_model` needs no re-ingest. Returns how many chunks were updated.
/// Runs in the caller's transaction; pass `max_chunks` to work in slices.
#[pg_extern(parallel_unsafe)]
fn reembed(max_chunks: default!(Option<i64>, "NULL")) -> i64 {
    crate::read::require_primary("rag.reembed");
    let limit = max_chunks.unwrap_or(i64::MAX);
    if limit < 1 {
        errors::invalid(format!("max_chunks must be at least 1, got {limit}"), "Pass NULL to re-embed everything.");
    }
    store::reembed_stale(limit)
}

// rag.reembed_all: re-embed everything in slices, each committed on its own, so that ingestion and
// searches are never blocked for longer than one slice (a function cannot commit; a procedure can).
// The new model's HNSW index is created by the first slice, over only that model's rows (partial).
extension_sql!(
    r#"
CREATE PROCEDURE rag.reembed_all(slice_size int DEFAULT 256)
LANGUAGE plpgsql
AS $$
DECLARE
    n bigint;
BEGIN
    IF slice_size IS NULL OR slice_size < 1 OR slice_size > 100000 THEN
        RAISE EXCEPTION 'slice_size must be between 1 and 100000, got %', slice_size
            USING ERRCODE = 'invalid_parameter_value', HINT = 'The default of 256 commits every few seconds.';
    END IF;
    LOOP
        n := rag.reembed(slice_size);
        COMMIT;
        EXIT WHEN n < slice_size;
    END LOOP;
END
$$;
COMMENT ON PROCEDURE rag.reembed_all(int) IS
  'Re-embed every missing or stale vector with the configured model, committing after each slice (CALL it outside a transaction block).';
"#,
    name = "reembed_all_sql",
    requires = [reembed]
);

