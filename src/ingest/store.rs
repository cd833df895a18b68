//! Writes of documents and chunks, and the per-model vector index. All SQL is parameterised; the only
//! values formatted into DDL are integers and identifiers/literals quoted by Postgres' `format()`.

use super::PreparedDocument;
use crate::errors::{self, NoRowIsNone, SpiOk};
use crate::guc;
use pgrx::prelude::*;
use pgrx::{JsonB, Uuid};

/// Deduplication is per owner and tenant: NULL owner/tenant mean the caller's (the worker passes the uploader's).
const FIND_BY_HASH: &str = "\
SELECT id FROM rag.document_files
WHERE file_hash = $1 AND owner = coalesce($2, current_user) AND tenant = coalesce($3, rag.current_tenant())";

const INSERT_DOCUMENT: &str = "\
INSERT INTO rag.document_files (file_name, file_type, title, file_size_bytes, file_hash, metadata, owner, tenant)
VALUES ($1, $2, $3, $4, $5, $6, coalesce($7, current_user), coalesce($8, rag.current_tenant())) RETURNING id";

const DELETE_DOCUMENT: &str = "DELETE FROM rag.document_files WHERE id = $1 RETURNING id";

const MODEL_DIMENSIONS: &str = "SELECT dimensions FROM rag.embedding_models WHERE model = $1";

/// Registers the model and builds its partial HNSW index: SECURITY DEFINER (CREATE INDEX needs the
/// table's owner; writers are not), defined in sql/ragbench--0.3.0--0.4.0.sql.
const REGISTER_MODEL: &str = "SELECT rag._register_model($1, $2, $3, $4)";

/// Serialise concurrent ingests of the same content (transaction-scoped advisory lock on its hash).
pub fn lock_hash(hash: &str) {
    Spi::run_with_args("SELECT pg_advisory_xact_lock(hashtextextended($1, 7193))", &[hash.into()])
        .or_raise("locking the document hash");
}

/// The document with these bytes of `owner`/`tenant` (None: the caller's).
pub fn find_by_hash(hash: &str, owner: Option<&str>, tenant: Option<&str>) -> Option<Uuid> {
    Spi::get_one_with_args::<Uuid>(FIND_BY_HASH, &[hash.into(), owner.into(), tenant.into()]).no_row_is_none().or_raise("looking up a document by hash")
}

/// Insert a prepared document and its chunks; returns the new document id.
pub fn insert_document(doc: PreparedDocument) -> Uuid {
    let id = insert_document_row(&doc);
    insert_chunks(vec![(id, doc)]);
    id
}

/// Insert the document row only (its chunks: `insert_chunks`).
pub fn insert_document_row(doc: &PreparedDocument) -> Uuid {
    Spi::get_one_with_args::<Uuid>(
        INSERT_DOCUMENT,
        &[
            doc.file_name.as_str().into(),
            doc.file_type.into(),
            doc.title.as_deref().into(),
            doc.size_bytes.into(),
            doc.hash.as_str().into(),
            JsonB(doc.metadata.clone()).into(),
            doc.owner.as_deref().into(),
            doc.tenant.as_deref().into(),
        ],
    )
    .or_raise("inserting the document")
    .unwrap_or_else(|| errors::invalid("inserting the document returned no id", ""))
}

/// Insert the chunks of several documents (already inserted, with these ids) in one statement, after
/// making sure each model has its vector index. One statement, not one per document or per slice:
/// each statement adds a pg_search segment. The rows stream into it (`staged.rs`), so memory does not
/// grow with the statement.
pub fn insert_chunks(docs: Vec<(Uuid, PreparedDocument)>) {
    let mut models: Vec<(String, usize)> = Vec::new();
    for (_, d) in &docs {
        if !d.chunks.is_empty() && !models.iter().any(|(m, n)| *m == d.model && *n == d.dimensions) {
            models.push((d.model.clone(), d.dimensions));
        }
    }
    if models.is_empty() {
        return;
    }
    for (model, dims) in models {
        ensure_model_index(&model, dims);
    }
    super::staged::insert(docs);
}

pub fn delete_document(id: Uuid) -> bool {
    Spi::get_one_with_args::<Uuid>(DELETE_DOCUMENT, &[id.into()]).no_row_is_none().or_raise("deleting the document").is_some()
}

/// pgvector's text form, `[x,y,...]`.
pub fn vector_literal(v: &[f32]) -> String {
    let mut s = String::with_capacity(v.len() * 12 + 2);
    s.push('[');
    for (i, x) in v.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&x.to_string());
    }
    s.push(']');
    s
}

/// The dimension recorded for a model, if it has stored vectors.
pub fn model_dimensions(model: &str) -> Option<usize> {
    crate::read::one::<i32>(MODEL_DIMENSIONS, &[model.into()])
        .or_raise("reading rag.embedding_models")
        .map(|d| d as usize)
}

/// Make sure `model` is registered with `dimensions` and has its partial HNSW index.
/// A model whose vectors change dimension is refused: that would mix two vector spaces.
pub fn ensure_model_index(model: &str, dimensions: usize) {
    if dimensions == 0 {
        errors::external(format!("embedding model '{model}' returned empty vectors"), "Check the embedding model.");
    }
    match model_dimensions(model) {
        Some(d) if d == dimensions => return,
        Some(d) => errors::raise(
            pgrx::PgSqlErrorCode::ERRCODE_DATA_EXCEPTION,
            format!("embedding model '{model}' returned {dimensions}-dimensional vectors, but its stored vectors have {d}"),
            "Configure the model that made the stored vectors, or give the new one another rag.embedding_model name.",
        ),
        None => {}
    }
    Spi::run_with_args(
        REGISTER_MODEL,
        &[model.into(), (dimensions as i32).into(), guc::HNSW_M.get().into(), guc::HNSW_EF_CONSTRUCTION.get().into()],
    )
    .or_raise("registering the embedding model and creating its vector index");
}

/// Chunks whose vector is missing or was made by another model than `$1`, oldest documents first.
const STALE_CHUNKS: &str = "\
SELECT id, content_with_context FROM rag.chunks
WHERE embedding_model IS DISTINCT FROM $1
ORDER BY document_id, chunk_index
LIMIT $2";

const SET_EMBEDDINGS: &str = "\
UPDATE rag.chunks c SET embedding = u.emb::vector, embedding_model = $3
FROM unnest($1::uuid[], $2::text[]) AS u(id, emb)
WHERE c.id = u.id";

/// Re-embed up to `limit` stale chunks with the configured model; returns how many were updated.
pub fn reembed_stale(limit: i64) -> i64 {
    let embedder = crate::embed::current();
    let model = embedder.model_id().to_string();
    let batch = crate::secrets::capped_batch_size() as i64;
    let mut done = 0i64;
    while done < limit {
        let take = batch.min(limit - done);
        let rows: Vec<(Uuid, String)> = Spi::connect(|client| {
            client
                .select(STALE_CHUNKS, None, &[model.as_str().into(), take.into()])?
                .map(|r| Ok((r.get::<Uuid>(1)?.unwrap_or(Uuid::from_bytes([0; 16])), r.get::<String>(2)?.unwrap_or_default())))
                .collect::<Result<Vec<_>, pgrx::spi::SpiError>>()
        })
        .or_raise("finding stale chunks");
        if rows.is_empty() {
            break;
        }
        let texts: Vec<&str> = rows.iter().map(|(_, t)| t.as_str()).collect();
        let vectors = crate::embed::embed_texts(embedder.as_ref(), &texts, crate::embed::InputKind::Document);
        let dims = vectors.first().map(Vec::len).unwrap_or(0);
        ensure_model_index(&model, dims);
        let ids: Vec<Uuid> = rows.iter().map(|(id, _)| *id).collect();
        let lits: Vec<String> = vectors.iter().map(|v| vector_literal(v)).collect();
        Spi::run_with_args(SET_EMBEDDINGS, &[ids.into(), lits.into(), model.as_str().into()]).or_raise("storing vectors");
        done += rows.len() as i64;
    }
    done
}
