//! One ingestion task, from its pgmq message to committed chunks, in three steps:
//!
//! 1. `claim`   read one message (pgmq visibility timeout), mark its task `processing`, attempts+1;
//! 2. `prepare` parse and chunk the file (total_chunks recorded), then embed in batches
//!              (completed_chunks recorded after each batch);
//! 3. `finish`  write document and chunks, mark the task `completed`, archive the message.
//!
//! The background worker commits after each step, so progress is visible while a file is embedded
//! and a crash leaves the message to be delivered again; `rag.process_queue` runs the steps in the
//! caller's transaction. Either way the message is archived only in the transaction that writes the
//! document, and re-delivery finds the document by content hash: each file ends up exactly once.

use crate::errors::SpiOk;
use pgrx::spi::SpiError;
use crate::guc;
use crate::ingest::{self, store, PreparedDocument};
use pgrx::prelude::*;
use pgrx::{JsonB, Uuid};

pub const QUEUE: &str = "rag_documents";

const READ_MESSAGES: &str = "\
SELECT msg_id, (message->>'task_id')::uuid FROM pgmq.read($1, $2, $3)";

const START_TASK: &str = "\
UPDATE rag.job_tasks SET status = 'processing', attempts = attempts + 1, updated_at = now()
WHERE id = $1 AND status IN ('pending', 'processing')
RETURNING batch_id, file_name, content, metadata, attempts";

const SET_TOTAL: &str = "\
UPDATE rag.job_tasks SET total_chunks = $2, completed_chunks = 0, updated_at = now() WHERE id = $1";

const SET_DONE: &str = "UPDATE rag.job_tasks SET completed_chunks = $2, updated_at = now() WHERE id = $1";

const COMPLETE_TASK: &str = "\
UPDATE rag.job_tasks t SET status = 'completed', document_id = $2, total_chunks = n.chunks, completed_chunks = n.chunks,
       content = NULL, error_message = NULL, updated_at = now()
FROM (SELECT count(*)::int AS chunks FROM rag.chunks WHERE document_id = $2) n
WHERE t.id = $1";

const FAIL_TASK: &str = "\
UPDATE rag.job_tasks SET status = $2, error_message = $3, updated_at = now() WHERE id = $1";

const ARCHIVE: &str = "SELECT pgmq.archive($1, $2)";
const RETRY_LATER: &str = "SELECT 1 FROM pgmq.set_vt($1, $2, $3)";
const RETRY_LATER_MANY: &str = "SELECT count(*) FROM pgmq.set_vt($1, $2::bigint[], $3)";
const TOUCH_BATCH: &str = "UPDATE rag.job_batches SET updated_at = now() WHERE id = $1";
const NOTIFY: &str = "SELECT pg_notify('rag_progress', $1)";

/// A claimed message and its task.
pub struct Claimed {
    pub msg_id: i64,
    pub task_id: Uuid,
    pub batch_id: Uuid,
    pub file_name: String,
    pub content: Vec<u8>,
    pub metadata: serde_json::Value,
    pub attempts: i32,
}

/// Read the next visible message and start its task. `None`: the queue is empty.
/// A message whose task is gone or already finished is archived and skipped.
pub fn claim() -> Option<Claimed> {
    loop {
        let (read, mut claimed) = claim_up_to(1);
        if read == 0 {
            return None;
        }
        if let Some(c) = claimed.pop() {
            return Some(c);
        }
    }
}

/// Read up to `n` visible messages in one statement and start their tasks. Returns how many
/// messages were read (0: the queue is empty) and the claimed tasks; messages whose task is gone or
/// already finished are archived and skipped.
pub fn claim_up_to(n: i32) -> (usize, Vec<Claimed>) {
    let vt = guc::VISIBILITY_TIMEOUT_S.get();
    let messages: Vec<(i64, Option<Uuid>)> = Spi::connect(|client| {
        client
            .select(READ_MESSAGES, None, &[QUEUE.into(), vt.into(), n.max(1).into()])?
            .map(|r| Ok((r.get::<i64>(1)?.unwrap_or(0), r.get::<Uuid>(2)?)))
            .collect::<Result<Vec<_>, SpiError>>()
    })
    .or_raise("reading the ingestion queue");
    let read = messages.len();
    let mut claimed = Vec::with_capacity(read);
    for (msg_id, task_id) in messages {
        match task_id.and_then(|t| start(msg_id, t)) {
            Some(c) => claimed.push(c),
            None => archive(msg_id),
        }
    }
    (read, claimed)
}

/// Mark a message's task `processing` (attempts + 1); `None` if the task is gone or finished.
fn start(msg_id: i64, task_id: Uuid) -> Option<Claimed> {
    let started = Spi::connect_mut(|client| {
        let mut rows = client.update(START_TASK, Some(1), &[task_id.into()])?;
        let Some(r) = rows.next() else { return Ok(None) };
        Ok::<_, SpiError>(Some((
            r.get::<Uuid>(1)?,
            r.get::<String>(2)?.unwrap_or_default(),
            r.get::<Vec<u8>>(3)?.unwrap_or_default(),
            r.get::<JsonB>(4)?.map(|j| j.0).unwrap_or_else(|| serde_json::json!({})),
            r.get::<i32>(5)?.unwrap_or(1),
        )))
    })
    .or_raise("starting an ingestion task");
    let (Some(batch_id), file_name, content, metadata, attempts) = started? else {
        return None;
    };
    notify(batch_id, task_id, "processing");
    Some(Claimed { msg_id, task_id, batch_id, file_name, content, metadata, attempts })
}

/// Keep the messages of tasks still in work invisible for another visibility timeout.
pub fn heartbeat(msg_ids: &[i64]) {
    if msg_ids.is_empty() {
        return;
    }
    Spi::run_with_args(RETRY_LATER_MANY, &[QUEUE.into(), msg_ids.to_vec().into(), guc::VISIBILITY_TIMEOUT_S.get().into()])
        .or_raise("extending the messages' visibility timeout");
}

/// Record that `done` chunks of the task are embedded (progress only; see `heartbeat`).
pub fn record_done(c: &Claimed, done: usize) {
    Spi::run_with_args(SET_DONE, &[c.task_id.into(), (done as i32).into()]).or_raise("recording progress");
}

/// Parse and chunk the claimed file; records total_chunks. Raises on bad input.
pub fn chunk(c: &Claimed) -> PreparedDocument {
    let doc = prepare_file(&c.file_name, &c.content, c.metadata.clone());
    Spi::run_with_args(SET_TOTAL, &[c.task_id.into(), (doc.chunks.len() as i32).into()]).or_raise("recording progress");
    doc
}

/// Record that `done` chunks of the task are embedded, and keep the message invisible for another
/// visibility timeout (a heartbeat: only a stalled or crashed worker lets it be delivered again).
pub fn record_progress(c: &Claimed, done: usize) {
    record_done(c, done);
    heartbeat(&[c.msg_id]);
}

/// Write the document (or find it: same content → same document), complete the task, archive.
pub fn finish(c: &Claimed, doc: &PreparedDocument) -> Uuid {
    finish_group(&[(c, doc)])[0]
}

/// `finish` for several files at once: documents found or inserted one by one (under their hash
/// locks), the chunks of every new document in one statement, then each task completed and its
/// message archived. Returns the document ids in order. An error aborts the whole group: run it in a
/// subtransaction and fall back to `finish` per file.
pub fn finish_group(items: &[(&Claimed, &PreparedDocument)]) -> Vec<Uuid> {
    let mut fresh: Vec<(Uuid, &PreparedDocument)> = Vec::new();
    let mut ids = Vec::with_capacity(items.len());
    for (_, doc) in items {
        store::lock_hash(&doc.hash);
        let id = match store::find_by_hash(&doc.hash) {
            Some(existing) => existing,
            None => {
                let id = store::insert_document_row(doc);
                fresh.push((id, *doc));
                id
            }
        };
        ids.push(id);
    }
    store::insert_chunks(&fresh);
    for ((c, _), id) in items.iter().zip(&ids) {
        Spi::run_with_args(COMPLETE_TASK, &[c.task_id.into(), (*id).into()]).or_raise("completing the task");
        archive(c.msg_id);
        Spi::run_with_args(TOUCH_BATCH, &[c.batch_id.into()]).or_raise("updating the batch");
        notify(c.batch_id, c.task_id, "completed");
    }
    ids
}

/// Record a failed attempt. Permanent failures, and the last allowed attempt, fail the task and archive
/// its message (a dead letter: rag.retry_failed sends it again); otherwise the message becomes visible
/// again after an exponential backoff.
pub fn fail(c: &Claimed, message: &str, permanent: bool) {
    let max = guc::MAX_ATTEMPTS.get().max(1);
    if permanent || c.attempts >= max {
        let text = if permanent { message.to_string() } else { format!("{message} (gave up after {} attempts)", c.attempts) };
        Spi::run_with_args(FAIL_TASK, &[c.task_id.into(), "failed".into(), text.as_str().into()]).or_raise("failing the task");
        archive(c.msg_id);
        notify(c.batch_id, c.task_id, "failed");
    } else {
        let backoff = backoff_seconds(c.attempts);
        Spi::run_with_args(FAIL_TASK, &[c.task_id.into(), "pending".into(), message.into()]).or_raise("rescheduling the task");
        Spi::run_with_args(RETRY_LATER, &[QUEUE.into(), c.msg_id.into(), backoff.into()]).or_raise("rescheduling the message");
        notify(c.batch_id, c.task_id, "pending");
    }
    Spi::run_with_args(TOUCH_BATCH, &[c.batch_id.into()]).or_raise("updating the batch");
}

/// 5 s, 10 s, 20 s … capped at 10 minutes.
pub fn backoff_seconds(attempts: i32) -> i32 {
    let exp = attempts.clamp(1, 8) - 1;
    (5 * (1 << exp)).min(600)
}

fn archive(msg_id: i64) {
    Spi::run_with_args(ARCHIVE, &[QUEUE.into(), msg_id.into()]).or_raise("archiving the message");
}

fn notify(batch_id: Uuid, task_id: Uuid, status: &str) {
    let payload = serde_json::json!({"batch_id": batch_id.to_string(), "task_id": task_id.to_string(), "status": status});
    Spi::run_with_args(NOTIFY, &[payload.to_string().as_str().into()]).or_raise("notifying rag_progress");
}

/// Detect the format of a file's bytes, extract its text and chunk it (no embedding yet).
pub fn prepare_file(file_name: &str, bytes: &[u8], metadata: serde_json::Value) -> PreparedDocument {
    ingest::check_arguments(file_name, bytes.len(), &metadata);
    let hash = ingest::content_hash(bytes);
    let extracted = ingest::extract(file_name, bytes);
    ingest::chunk_text(
        file_name,
        &extracted.text,
        Some(extracted.text_format),
        Some(extracted.kind.as_str()),
        bytes.len(),
        hash,
        metadata,
    )
}
