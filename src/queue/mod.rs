//! Asynchronous ingestion through pgmq: `rag.upload` enqueues files, the background worker
//! (`worker.rs`) or `rag.process_queue` ingests them (`task.rs`), `rag.batch_status` (sql/schema.sql)
//! reports progress, `rag.retry_failed` re-sends dead letters.

pub mod crash_test;
pub mod launcher;
pub mod subxact;
pub mod task;
pub mod toplevel;
pub mod worker;

use crate::errors::{self, SpiOk};
use crate::ingest::{self, store};
use pgrx::prelude::*;
use crate::jsonb_arg::JsonbArg;
use pgrx::{JsonB, Uuid};

const CREATE_BATCH: &str = "INSERT INTO rag.job_batches (total_tasks) VALUES ($1) RETURNING id";

const INSERT_TASKS: &str = "\
INSERT INTO rag.job_tasks (batch_id, file_name, content, file_size_bytes, metadata)
SELECT $1, f.name, f.content, octet_length(f.content), $4
FROM unnest($2::text[], $3::bytea[]) AS f(name, content)";

/// One pgmq message per new task of the batch: SECURITY DEFINER (writers have no right on the queue),
/// defined in sql/ragbench--0.3.0--0.4.0.sql.
const SEND_MESSAGES: &str = "SELECT rag._enqueue_batch($1)";

const RETRY_FAILED: &str = "\
UPDATE rag.job_tasks t
SET status = 'pending', attempts = 0, error_message = NULL, updated_at = now(),
    msg_id = (SELECT pgmq.send($2, jsonb_build_object('task_id', t.id)))
WHERE t.batch_id = $1 AND t.status = 'failed' AND t.content IS NOT NULL";

/// Queue files for ingestion; returns the batch id. Runs in the caller's transaction: a rollback
/// takes the batch, its tasks and its messages with it.
#[pg_extern(parallel_unsafe)]
fn upload(file_names: Vec<Option<String>>, contents: pgrx::Array<'_, &[u8]>, metadata: default!(JsonbArg, "'{}'")) -> Uuid {
    crate::read::require_primary("rag.upload");
    let metadata = JsonB(ingest::read_metadata("(upload)", &metadata));
    let contents: Vec<Option<&[u8]>> = contents.iter().collect();
    if file_names.len() != contents.len() {
        errors::invalid(
            format!("file_names has {} elements but contents has {}", file_names.len(), contents.len()),
            "Pass one content per file name, in the same order.",
        );
    }
    let mut names = Vec::with_capacity(file_names.len());
    for (i, (name, content)) in file_names.into_iter().zip(&contents).enumerate() {
        let Some(name) = name else {
            errors::invalid(format!("file_names[{}] is NULL", i + 1), "Every file needs a name.");
        };
        let Some(content) = content else {
            errors::invalid(format!("contents[{}] ('{}') is NULL", i + 1, ingest::short(&name)), "Pass the file's bytes.");
        };
        ingest::check_arguments(&name, content.len(), &metadata.0);
        names.push(name.trim().to_string());
    }
    let contents: Vec<&[u8]> = contents.into_iter().flatten().collect();
    let batch = Spi::get_one_with_args::<Uuid>(CREATE_BATCH, &[(names.len() as i32).into()])
        .or_raise("creating the batch")
        .unwrap_or_else(|| errors::invalid("creating the batch returned no id", ""));
    if !names.is_empty() {
        Spi::run_with_args(INSERT_TASKS, &[batch.into(), names.into(), contents.into(), metadata.into()])
            .or_raise("recording the files");
        Spi::run_with_args(SEND_MESSAGES, &[batch.into()]).or_raise("queueing the files");
    }
    batch
}

/// Process up to `max_messages` queued files in this backend (for servers without the background
/// worker, and for tests). Returns how many files were processed (completed or failed); a file given
/// up on because its processing died `rag.max_attempts` times is failed without being processed.
#[pg_extern(parallel_unsafe)]
fn process_queue(max_messages: default!(i32, 10)) -> i32 {
    crate::read::require_primary("rag.process_queue");
    if max_messages < 1 {
        errors::invalid(format!("max_messages must be at least 1, got {max_messages}"), "");
    }
    let mut handled = 0;
    while handled < max_messages {
        crate::interrupts::check();
        let Some(claimed) = task::claim() else { break };
        // Cancel and statement_timeout are raised again by subxact::run: they end the call.
        let outcome = subxact::run(|| {
            let mut doc = task::chunk(&claimed);
            let mut done = 0;
            for range in ingest::embedding_batches(&doc) {
                // Keep the message invisible for the whole next step, before it starts.
                task::heartbeat(&[claimed.msg_id]);
                crate::interrupts::check();
                done += range.len();
                if let Err(e) = ingest::embed_range(&mut doc, range) {
                    crate::embed::report(e);
                }
                task::record_done(&claimed, done);
            }
            task::heartbeat(&[claimed.msg_id]);
            task::finish(&claimed, &doc)
        });
        if let Err(f) = outcome {
            task::fail(&claimed, &f.message, f.is_permanent());
        }
        handled += 1;
    }
    handled
}

/// Send the failed files of a batch to the queue again (attempts reset). Returns how many.
#[pg_extern(parallel_unsafe)]
fn retry_failed(batch_id: Uuid) -> i64 {
    crate::read::require_primary("rag.retry_failed");
    let before = Spi::get_one_with_args::<i64>(
        "SELECT count(*) FROM rag.job_tasks WHERE batch_id = $1 AND status = 'failed' AND content IS NOT NULL",
        &[batch_id.into()],
    )
    .or_raise("counting failed tasks")
    .unwrap_or(0);
    Spi::run_with_args(RETRY_FAILED, &[batch_id.into(), task::QUEUE.into()]).or_raise("re-queueing failed tasks");
    before
}

/// Ingest a binary document (PDF, DOCX, HTML, Markdown, text) synchronously.
#[pg_extern(parallel_unsafe, name = "ingest_document")]
fn ingest_document_bytes(file_name: &str, content: &[u8], metadata: default!(JsonbArg, "'{}'")) -> Uuid {
    crate::read::require_primary("rag.ingest_document");
    let metadata = ingest::read_metadata(file_name, &metadata);
    let hash = ingest::content_hash(content);
    store::lock_hash(&hash);
    if let Some(existing) = store::find_by_hash(&hash, None, None) {
        return existing;
    }
    let mut doc = task::prepare_file(file_name, content, metadata);
    ingest::embed_all(&mut doc);
    store::insert_document(doc)
}
