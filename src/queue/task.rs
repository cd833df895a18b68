//! One ingestion task, from its pgmq message to committed chunks, in three steps:
//!
//! 1. `claim`   read one message (pgmq visibility timeout), mark its task `processing` under a new
//!              claim token, attempts+1 (a task whose earlier claims all died is failed instead);
//! 2. `prepare` parse and chunk the file (total_chunks recorded), then embed in batches
//!              (completed_chunks recorded after each batch);
//! 3. `finish`  write document and chunks, mark the task `completed`, archive the message.
//!
//! The background worker commits after each step, so progress is visible while a file is embedded
//! and a crash leaves the message to be delivered again; `rag.process_queue` runs the steps in the
//! caller's transaction. Either way the message is archived only in the transaction that writes the
//! document, and re-delivery finds the document by content hash: each file ends up exactly once.

use crate::errors::{NoRowIsNone, SpiOk};
use pgrx::spi::SpiError;
use crate::guc;
use crate::ingest::{self, store, PreparedDocument};
use pgrx::prelude::*;
use pgrx::{JsonB, Uuid};

pub const QUEUE: &str = "rag_documents";

/// The raw message: parsed in Rust, so that one malformed message cannot make the read itself fail.
const READ_MESSAGES: &str = "SELECT msg_id, message::text FROM pgmq.read($1, $2, $3)";

/// Start a claim: a new claim token, attempts + 1 (counted when claimed, so a file that kills the
/// process is counted too).
const START_TASK: &str = "\
UPDATE rag.job_tasks SET status = 'processing', attempts = attempts + 1, claim_token = gen_random_uuid(),
       updated_at = now()
WHERE id = $1 AND status IN ('pending', 'processing')
RETURNING batch_id, file_name, content, metadata, attempts, claim_token, owner, tenant";

/// Give up on a task whose processing died `rag.max_attempts` times (no content read, no work done).
const GIVE_UP_DEAD: &str = "\
UPDATE rag.job_tasks SET status = 'failed', claim_token = NULL, updated_at = now(),
       error_message = format('the server process died while processing this file %s times (rag.max_attempts = %s); \
giving up. rag.retry_failed() queues it again.', attempts, $2)
WHERE id = $1 AND status = 'processing' AND attempts >= $2
RETURNING batch_id, attempts";

/// Lock the task row of the current claim; no row: another consumer has claimed it since (this one is stale).
const HOLDS_CLAIM: &str = "\
SELECT true FROM rag.job_tasks WHERE id = $1 AND claim_token = $2 AND status = 'processing' FOR UPDATE";

const UNFINISHED: &str = "SELECT status = 'processing' FROM rag.job_tasks WHERE id = $1";

const DEAD_LETTER: &str = "\
INSERT INTO rag.dead_letters (queue_name, msg_id, message, reason) VALUES ($1, $2, $3, $4)";

const SET_TOTAL: &str = "\
UPDATE rag.job_tasks SET total_chunks = $2, completed_chunks = 0, updated_at = now() WHERE id = $1 AND claim_token = $3";

const SET_DONE: &str = "\
UPDATE rag.job_tasks SET completed_chunks = $2, updated_at = now() WHERE id = $1 AND claim_token = $3";

const COMPLETE_TASK: &str = "\
UPDATE rag.job_tasks t SET status = 'completed', document_id = $2, total_chunks = n.chunks, completed_chunks = n.chunks,
       content = NULL, error_message = NULL, claim_token = NULL, updated_at = now()
FROM (SELECT count(*)::int AS chunks FROM rag.chunks WHERE document_id = $2) n
WHERE t.id = $1 AND t.claim_token = $3";

/// Only the current claim may fail its task; a stale consumer's update matches no row.
const FAIL_TASK: &str = "\
UPDATE rag.job_tasks SET status = $2, error_message = $3, updated_at = now(),
       claim_token = NULL
WHERE id = $1 AND claim_token = $4 AND status = 'processing'
RETURNING id";

const ARCHIVE: &str = "SELECT pgmq.archive($1, $2)";
const RETRY_LATER: &str = "SELECT 1 FROM pgmq.set_vt($1, $2, $3)";
const RETRY_LATER_MANY: &str = "SELECT count(*) FROM pgmq.set_vt($1, $2::bigint[], $3)";
const TOUCH_BATCH: &str = "UPDATE rag.job_batches SET updated_at = now() WHERE id = $1";
/// One channel per batch, `rag_progress_<batch id without dashes>` (rag.progress_channel): LISTEN has no
/// privileges in PostgreSQL, so only those who know the batch id can follow it.
const NOTIFY: &str = "SELECT pg_notify('rag_progress_' || replace($1::text, '-', ''), $2)";

/// A claimed message and its task. `token` identifies this claim: only it may complete or fail the task.
pub struct Claimed {
    pub msg_id: i64,
    pub task_id: Uuid,
    pub token: Uuid,
    pub batch_id: Uuid,
    pub file_name: String,
    pub content: Vec<u8>,
    pub metadata: serde_json::Value,
    pub attempts: i32,
    /// The uploader's role and tenant: the document is written as theirs.
    pub owner: String,
    pub tenant: String,
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

/// What a queue message asks for: the task id, or why the message is unusable.
pub fn parse_message(message: Option<&str>) -> Result<Uuid, String> {
    let text = message.ok_or_else(|| "the message is NULL".to_string())?;
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("the message is not JSON ({e})"))?;
    let id = value
        .get("task_id")
        .ok_or_else(|| "the message has no task_id".to_string())?
        .as_str()
        .ok_or_else(|| "task_id is not a string".to_string())?;
    let parsed = uuid::Uuid::parse_str(id).map_err(|_| format!("task_id '{}' is not a uuid", crate::ingest::short(id)))?;
    Ok(Uuid::from_bytes(*parsed.as_bytes()))
}

/// Read up to `n` visible messages in one statement and start their tasks. Returns how many
/// messages were read (0: the queue is empty) and the claimed tasks. Malformed messages become dead
/// letters (archived, reason in rag.dead_letters); messages whose task is gone or finished are
/// archived; tasks whose processing died `rag.max_attempts` times are failed.
pub fn claim_up_to(n: i32) -> (usize, Vec<Claimed>) {
    let vt = guc::VISIBILITY_TIMEOUT_S.get();
    let messages: Vec<(i64, Option<String>)> = Spi::connect(|client| {
        client
            .select(READ_MESSAGES, None, &[QUEUE.into(), vt.into(), n.max(1).into()])?
            .map(|r| Ok((r.get::<i64>(1)?.unwrap_or(0), r.get::<String>(2)?)))
            .collect::<Result<Vec<_>, SpiError>>()
    })
    .or_raise("reading the ingestion queue");
    let read = messages.len();
    let mut claimed = Vec::with_capacity(read);
    // A task whose previous claim never ended may be the file that killed that process: it is
    // processed alone, so that the other files of its group are not counted as dying with it.
    let mut alone = false;
    for (msg_id, message) in messages {
        let task_id = match parse_message(message.as_deref()) {
            Ok(t) => t,
            Err(reason) => {
                dead_letter(msg_id, message.as_deref(), &reason);
                continue;
            }
        };
        if alone {
            release(msg_id);
            continue;
        }
        let suspect = previous_claim_unfinished(task_id);
        if suspect && !claimed.is_empty() {
            release(msg_id);
            continue;
        }
        match start(msg_id, task_id) {
            Some(c) => {
                claimed.push(c);
                alone = suspect;
            }
            None => archive(msg_id),
        }
    }
    (read, claimed)
}

/// The task is still `processing` although its message was delivered again: its last claim died.
fn previous_claim_unfinished(task_id: Uuid) -> bool {
    Spi::get_one_with_args::<bool>(UNFINISHED, &[task_id.into()])
        .no_row_is_none()
        .or_raise("reading the task's state")
        .unwrap_or(false)
}

/// Make a read message visible again at once, untouched (another group takes it).
fn release(msg_id: i64) {
    Spi::run_with_args(RETRY_LATER, &[QUEUE.into(), msg_id.into(), 0.into()]).or_raise("releasing a message");
}

/// Archive a message that cannot be processed and record why, with a WARNING in the server log.
fn dead_letter(msg_id: i64, message: Option<&str>, reason: &str) {
    warning!("ragbench: message {msg_id} of queue {QUEUE} is malformed ({reason}); archived as a dead letter");
    let shown: Option<String> = message.map(|m| m.chars().take(1000).collect());
    Spi::run_with_args(DEAD_LETTER, &[QUEUE.into(), msg_id.into(), shown.into(), reason.into()])
        .or_raise("recording a dead letter");
    archive(msg_id);
}

/// Mark a message's task `processing` under a new claim (attempts + 1); `None` if the task is gone or
/// finished, or if its processing already died `rag.max_attempts` times (then it is failed here).
fn start(msg_id: i64, task_id: Uuid) -> Option<Claimed> {
    let max = guc::MAX_ATTEMPTS.get().max(1);
    let dead = Spi::connect_mut(|client| {
        let mut rows = client.update(GIVE_UP_DEAD, Some(1), &[task_id.into(), max.into()])?;
        let Some(r) = rows.next() else { return Ok(None) };
        Ok::<_, SpiError>(Some((r.get::<Uuid>(1)?, r.get::<i32>(2)?.unwrap_or(max))))
    })
    .or_raise("checking the task's earlier attempts");
    if let Some((batch, attempts)) = dead {
        warning!("ragbench: task {task_id}: the server process died while processing its file {attempts} times; marked failed");
        if let Some(b) = batch {
            Spi::run_with_args(TOUCH_BATCH, &[b.into()]).or_raise("updating the batch");
            notify(b, task_id, "failed");
        }
        return None;
    }
    let started = Spi::connect_mut(|client| {
        let mut rows = client.update(START_TASK, Some(1), &[task_id.into()])?;
        let Some(r) = rows.next() else { return Ok(None) };
        Ok::<_, SpiError>(Some((
            r.get::<Uuid>(1)?,
            r.get::<String>(2)?.unwrap_or_default(),
            r.get::<Vec<u8>>(3)?.unwrap_or_default(),
            r.get::<JsonB>(4)?.map(|j| j.0).unwrap_or_else(|| serde_json::json!({})),
            r.get::<i32>(5)?.unwrap_or(1),
            r.get::<Uuid>(6)?,
            r.get::<String>(7)?.unwrap_or_default(),
            r.get::<String>(8)?.unwrap_or_default(),
        )))
    })
    .or_raise("starting an ingestion task");
    let (Some(batch_id), file_name, content, metadata, attempts, Some(token), owner, tenant) = started? else {
        return None;
    };
    notify(batch_id, task_id, "processing");
    Some(Claimed { msg_id, task_id, token, batch_id, file_name, content, metadata, attempts, owner, tenant })
}

/// Whether `c` is still the task's current claim, locking the task row until the transaction ends (so
/// no other consumer can claim it meanwhile). A stale claim must not write anything.
pub fn holds_claim(c: &Claimed) -> bool {
    Spi::get_one_with_args::<bool>(HOLDS_CLAIM, &[c.task_id.into(), c.token.into()])
        .no_row_is_none()
        .or_raise("checking the task's claim")
        .unwrap_or(false)
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
    Spi::run_with_args(SET_DONE, &[c.task_id.into(), (done as i32).into(), c.token.into()]).or_raise("recording progress");
}

/// Parse and chunk the claimed file; records total_chunks. Raises on bad input.
pub fn chunk(c: &Claimed) -> PreparedDocument {
    super::crash_test::maybe_abort(&c.file_name);
    let mut doc = prepare_file(&c.file_name, &c.content, c.metadata.clone());
    doc.owner = Some(c.owner.clone());
    doc.tenant = Some(c.tenant.clone());
    Spi::run_with_args(SET_TOTAL, &[c.task_id.into(), (doc.chunks.len() as i32).into(), c.token.into()])
        .or_raise("recording progress");
    doc
}

/// Write the document (or find it: same content → same document), complete the task, archive.
/// `None`: the claim is stale (another consumer took the task over), and nothing was written.
pub fn finish(c: &Claimed, doc: &PreparedDocument) -> Option<Uuid> {
    finish_group(&[(c, doc)]).pop().flatten()
}

/// `finish` for several files at once: documents found or inserted one by one (under their hash
/// locks), the chunks of every new document in one statement, then each task completed and its
/// message archived. Returns the document ids in order (`None` for a stale claim, which writes
/// nothing: its task row is checked and locked first). An error aborts the whole group: run it in a
/// subtransaction and fall back to `finish` per file.
pub fn finish_group(items: &[(&Claimed, &PreparedDocument)]) -> Vec<Option<Uuid>> {
    let live: Vec<bool> = items.iter().map(|(c, _)| holds_claim(c)).collect();
    for ((c, _), ok) in items.iter().zip(&live) {
        if !ok {
            log!("ragbench: task {} was claimed by another consumer meanwhile; this claim writes nothing", c.task_id);
        }
    }
    let items: Vec<&(&Claimed, &PreparedDocument)> = items.iter().zip(&live).filter(|(_, ok)| **ok).map(|(i, _)| i).collect();
    let mut fresh: Vec<(Uuid, PreparedDocument)> = Vec::new();
    let mut ids = Vec::with_capacity(items.len());
    for (_, doc) in &items {
        store::lock_hash(&doc.hash);
        let id = match store::find_by_hash(&doc.hash, doc.owner.as_deref(), doc.tenant.as_deref()) {
            Some(existing) => existing,
            None => {
                let id = store::insert_document_row(doc);
                // A copy: on an error the caller retries the files one by one with the same documents.
                fresh.push((id, (*doc).clone()));
                id
            }
        };
        ids.push(id);
    }
    store::insert_chunks(fresh);
    for ((c, _), id) in items.iter().zip(&ids) {
        Spi::run_with_args(COMPLETE_TASK, &[c.task_id.into(), (*id).into(), c.token.into()]).or_raise("completing the task");
        archive(c.msg_id);
        Spi::run_with_args(TOUCH_BATCH, &[c.batch_id.into()]).or_raise("updating the batch");
        notify(c.batch_id, c.task_id, "completed");
    }
    let mut ids = ids.into_iter();
    live.into_iter().map(|ok| if ok { ids.next() } else { None }).collect()
}

/// Record a failed attempt. Permanent failures, and the last allowed attempt, fail the task and archive
/// its message (a dead letter: rag.retry_failed sends it again); otherwise the message becomes visible
/// again after an exponential backoff.
/// A stale claim (another consumer took the task over) changes nothing.
pub fn fail(c: &Claimed, message: &str, permanent: bool) {
    let max = guc::MAX_ATTEMPTS.get().max(1);
    let last = permanent || c.attempts >= max;
    let text = if last && !permanent { format!("{message} (gave up after {} attempts)", c.attempts) } else { message.to_string() };
    let status = if last { "failed" } else { "pending" };
    let updated = Spi::get_one_with_args::<Uuid>(FAIL_TASK, &[c.task_id.into(), status.into(), text.as_str().into(), c.token.into()])
        .no_row_is_none()
        .or_raise("recording the failed attempt");
    if updated.is_none() {
        log!("ragbench: task {} was claimed by another consumer meanwhile; its failure here is not recorded", c.task_id);
        return;
    }
    if last {
        archive(c.msg_id);
        notify(c.batch_id, c.task_id, "failed");
    } else {
        let backoff = backoff_seconds(c.attempts);
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
    Spi::run_with_args(NOTIFY, &[batch_id.into(), payload.to_string().as_str().into()]).or_raise("notifying the batch's progress channel");
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

#[cfg(test)]
mod message_tests {
    use super::parse_message;

    #[test]
    fn a_task_message_names_its_task() {
        let id = parse_message(Some(r#"{"task_id": "6c8e7a52-3f0b-4a52-9a3c-1f3e9d6b2a10"}"#)).expect("valid");
        assert_eq!(id.to_string(), "6c8e7a52-3f0b-4a52-9a3c-1f3e9d6b2a10");
    }

    #[test]
    fn malformed_messages_say_why() {
        let cases = [
            (None, "NULL"),
            (Some("not json"), "not JSON"),
            (Some("[1, 2]"), "no task_id"),
            (Some(r#"{"other": 1}"#), "no task_id"),
            (Some(r#"{"task_id": 7}"#), "not a string"),
            (Some(r#"{"task_id": "x'; DROP TABLE t; --"}"#), "not a uuid"),
        ];
        for (msg, why) in cases {
            let err = parse_message(msg).expect_err("malformed");
            assert!(err.contains(why), "{msg:?}: {err}");
        }
    }
}
