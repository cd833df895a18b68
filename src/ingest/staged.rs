//! Chunk rows reach `rag.chunks` through one `INSERT … SELECT … FROM rag._staged_chunks()`.
//!
//! The prepared documents are handed to backend memory (`STAGED`) for the duration of that one
//! statement, and the set-returning function gives them to the executor one row at a time, moving
//! each chunk's text out as it goes. The statement therefore carries no copy of the text in its
//! arguments: parallel-array parameters cost about five copies of a document's text (Rust strings,
//! text datums, the array, the planner's constant, the executor), which made a 2 MB document peak at
//! 20 times its size. The executor keeps the function's rows in a tuplestore that spills to disk past
//! `work_mem`, so the statement's memory does not grow with the document. It is still one statement
//! per document or group of documents, so one pg_search segment, not one per slice.
//!
//! `rag._staged_chunks()` is not SECURITY DEFINER and returns only what the calling backend staged in
//! this statement: called by anyone else, at any other time, it returns no rows.

use super::PreparedDocument;
use crate::errors::SpiOk;
use pgrx::prelude::*;
use pgrx::{JsonB, Uuid};
use std::cell::RefCell;

thread_local! {
    static STAGED: RefCell<Option<Vec<(Uuid, PreparedDocument)>>> = const { RefCell::new(None) };
}

/// The chunks of every staged document, each with its document's owner and tenant (NULL: the
/// caller's, as for the document row).
const INSERT_STAGED: &str = "\
INSERT INTO rag.chunks (document_id, chunk_index, content, content_with_context, token_count,
                        embedding, embedding_model, metadata, owner, tenant)
SELECT s.document_id, s.chunk_index, s.content, s.content_with_context, s.token_count,
       s.embedding::vector, s.embedding_model, s.metadata,
       coalesce(s.owner, current_user), coalesce(s.tenant, rag.current_tenant())
FROM rag._staged_chunks() AS s";

/// Clears the staged rows when the statement ends, also when it fails.
struct Staging;

impl Drop for Staging {
    fn drop(&mut self) {
        STAGED.with(|s| s.borrow_mut().take());
    }
}

/// Insert the chunks of `docs` (whose document rows exist, with these ids) in one statement.
pub fn insert(docs: Vec<(Uuid, PreparedDocument)>) {
    STAGED.with(|s| *s.borrow_mut() = Some(docs));
    let _staging = Staging;
    Spi::run(INSERT_STAGED).or_raise("inserting chunks");
}

/// The staged chunk rows, moved out of backend memory one at a time (defined in
/// sql/ragbench--0.4.0--0.5.0.sql; EXECUTE for rag_writer).
#[pg_extern(sql = false)]
fn _staged_chunks() -> TableIterator<
    'static,
    (
        name!(document_id, Uuid),
        name!(chunk_index, i32),
        name!(content, String),
        name!(content_with_context, String),
        name!(token_count, i32),
        name!(embedding, Vec<f32>),
        name!(embedding_model, String),
        name!(metadata, JsonB),
        name!(owner, Option<String>),
        name!(tenant, Option<String>),
    ),
> {
    let docs = STAGED.with(|s| s.borrow_mut().take()).unwrap_or_default();
    TableIterator::new(docs.into_iter().flat_map(|(id, doc)| {
        let PreparedDocument { chunks, model, metadata, owner, tenant, .. } = doc;
        chunks.into_iter().map(move |c| {
            crate::interrupts::check();
            let with_context = c.content_with_context().into_owned();
            let meta = JsonB(c.metadata(&metadata));
            (id, c.index, c.content, with_context, c.token_count, c.embedding, model.clone(), meta, owner.clone(), tenant.clone())
        })
    }))
}
