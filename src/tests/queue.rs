use pgrx::prelude::*;

#[pg_schema]
mod tests {
    use pgrx::prelude::*;
    use pgrx::Uuid;

    fn upload(names: &[&str], contents: &[&[u8]]) -> Uuid {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let contents: Vec<Vec<u8>> = contents.iter().map(|c| c.to_vec()).collect();
        Spi::get_one_with_args::<Uuid>("SELECT rag.upload($1, $2)", &[names.into(), contents.into()]).unwrap().unwrap()
    }

    fn status(batch: Uuid) -> (String, i32, i32, i32) {
        let (s, total) = Spi::get_two_with_args::<String, i32>(
            "SELECT status, total_files FROM rag.batch_status($1)",
            &[batch.into()],
        )
        .unwrap();
        let (done, failed) = Spi::get_two_with_args::<i32, i32>(
            "SELECT completed, failed FROM rag.batch_status($1)",
            &[batch.into()],
        )
        .unwrap();
        (s.unwrap(), total.unwrap(), done.unwrap(), failed.unwrap())
    }

    #[pg_test]
    fn upload_then_process_queue_ingests_every_file_once() {
        let batch = upload(
            &["a.md", "b.txt", "c.html"],
            &[b"# Alpha\n\nAlpha text about WAL archiving.", b"Bravo text about checkpoints.", b"<h1>Charlie</h1><p>Charlie text about vacuum.</p>"],
        );
        assert_eq!(status(batch), ("pending".into(), 3, 0, 0));
        let messages = Spi::get_one::<i64>("SELECT count(*) FROM pgmq.q_rag_documents").unwrap().unwrap();
        assert_eq!(messages, 3, "one pgmq message per file");
        assert_eq!(Spi::get_one::<i32>("SELECT rag.process_queue(10)").unwrap(), Some(3));
        assert_eq!(status(batch), ("completed".into(), 3, 3, 0));
        assert_eq!(Spi::get_one::<i64>("SELECT count(*) FROM rag.documents").unwrap(), Some(3));
        assert_eq!(Spi::get_one::<i64>("SELECT count(*) FROM pgmq.q_rag_documents").unwrap(), Some(0));
        assert_eq!(Spi::get_one::<i64>("SELECT count(*) FROM pgmq.a_rag_documents").unwrap(), Some(3), "archived, not deleted");
        // nothing left to do
        assert_eq!(Spi::get_one::<i32>("SELECT rag.process_queue(10)").unwrap(), Some(0));
        // the file's bytes are dropped once ingested; chunk progress is complete
        assert_eq!(
            Spi::get_one::<i64>("SELECT count(*) FROM rag.job_tasks WHERE content IS NOT NULL OR completed_chunks <> total_chunks OR total_chunks = 0").unwrap(),
            Some(0)
        );
    }

    #[pg_test]
    fn a_bad_file_fails_alone_and_can_be_retried() {
        let batch = upload(&["good.txt", "broken.pdf"], &[b"A good text about replication slots.", b"%PDF-1.4 not really a pdf"]);
        Spi::run("SELECT rag.process_queue(10)").unwrap();
        assert_eq!(status(batch), ("partially failed".into(), 2, 1, 1));
        let err = Spi::get_one_with_args::<String>(
            "SELECT error FROM rag.batch_files($1) WHERE file_name = 'broken.pdf'",
            &[batch.into()],
        )
        .unwrap()
        .unwrap();
        assert!(err.contains("broken.pdf") && err.contains("PDF"), "{err}");
        // dead letter: archived, listed, and sent again by retry_failed
        assert_eq!(Spi::get_one_with_args::<i64>("SELECT rag.retry_failed($1)", &[batch.into()]).unwrap(), Some(1));
        assert_eq!(Spi::get_one::<i64>("SELECT count(*) FROM pgmq.q_rag_documents").unwrap(), Some(1));
        Spi::run("SELECT rag.process_queue(10)").unwrap();
        assert_eq!(status(batch).3, 1, "still failed: the file is still broken");
    }

    #[pg_test]
    fn same_file_twice_in_a_batch_is_one_document() {
        let batch = upload(&["x.txt", "x-copy.txt"], &[b"Same bytes about hot standby.", b"Same bytes about hot standby."]);
        Spi::run("SELECT rag.process_queue(10)").unwrap();
        assert_eq!(status(batch), ("completed".into(), 2, 2, 0));
        assert_eq!(Spi::get_one::<i64>("SELECT count(*) FROM rag.documents").unwrap(), Some(1));
        assert_eq!(
            Spi::get_one::<i64>("SELECT count(DISTINCT document_id) FROM rag.job_tasks").unwrap(),
            Some(1)
        );
    }

    #[pg_test(error = "file_names has 2 elements but contents has 1")]
    fn upload_checks_array_lengths() {
        Spi::run("SELECT rag.upload(ARRAY['a','b'], ARRAY['x'::bytea])").unwrap();
    }

    #[pg_test]
    fn ingest_document_accepts_bytes() {
        let id = Spi::get_one::<Uuid>("SELECT rag.ingest_document('n.md', convert_to(E'# Notes\\n\\nBinary path text about logical decoding.', 'UTF8'))")
            .unwrap();
        assert!(id.is_some());
        assert_eq!(Spi::get_one::<String>("SELECT file_type FROM rag.documents").unwrap().as_deref(), Some("markdown"));
    }

    #[pg_test]
    fn a_task_whose_processing_died_max_attempts_times_is_failed_not_retried() {
        let batch = upload(&["killer.txt", "fine.txt"], &[b"A file that killed three workers.", b"A fine file about indexes."]);
        // as three deaths leave it: claimed three times, never finished
        Spi::run("UPDATE rag.job_tasks SET status = 'processing', attempts = 3, claim_token = gen_random_uuid() WHERE file_name = 'killer.txt'")
            .unwrap();
        // the dead file is failed when its message is read, without being processed again
        assert_eq!(Spi::get_one::<i32>("SELECT rag.process_queue(10)").unwrap(), Some(1));
        assert_eq!(status(batch), ("partially failed".into(), 2, 1, 1));
        let (err, attempts) = Spi::get_two::<String, i32>(
            "SELECT error_message, attempts FROM rag.job_tasks WHERE file_name = 'killer.txt'",
        )
        .unwrap();
        assert!(err.unwrap().contains("died while processing this file 3 times"));
        assert_eq!(attempts, Some(3), "giving up is not another attempt");
        assert_eq!(Spi::get_one::<i64>("SELECT count(*) FROM pgmq.q_rag_documents").unwrap(), Some(0));
    }

    #[pg_test]
    fn a_stale_claim_completes_nothing() {
        upload(&["stale.txt"], &[b"Stale claims must not write."]);
        // another consumer's claim is current: this backend's claim token never matches it
        Spi::run("UPDATE rag.job_tasks SET status = 'processing', attempts = 1, claim_token = gen_random_uuid()").unwrap();
        let token = Spi::get_one::<Uuid>("SELECT claim_token FROM rag.job_tasks").unwrap().unwrap();
        assert_eq!(Spi::get_one::<i32>("SELECT rag.process_queue(10)").unwrap(), Some(1));
        // process_queue re-claimed it (new token, attempt 2) and completed it under its own claim
        let (st, attempts) = Spi::get_two::<String, i32>("SELECT status, attempts FROM rag.job_tasks").unwrap();
        assert_eq!((st.as_deref(), attempts), (Some("completed"), Some(2)));
        // the old token can no longer fail or complete anything
        let n = Spi::get_one_with_args::<i64>(
            "SELECT count(*) FROM rag.job_tasks WHERE claim_token = $1",
            &[token.into()],
        )
        .unwrap();
        assert_eq!(n, Some(0));
    }

    #[pg_test]
    fn malformed_messages_become_dead_letters() {
        Spi::run("SELECT pgmq.send('rag_documents', '{\"task_id\": \"nope\"}')").unwrap();
        Spi::run("SELECT pgmq.send('rag_documents', '\"just a string\"')").unwrap();
        upload(&["after.txt"], &[b"A file queued after two poison messages."]);
        assert_eq!(Spi::get_one::<i32>("SELECT rag.process_queue(10)").unwrap(), Some(1));
        assert_eq!(Spi::get_one::<i64>("SELECT count(*) FROM rag.dead_letters").unwrap(), Some(2));
        let reason = Spi::get_one::<String>("SELECT reason FROM rag.dead_letters ORDER BY id LIMIT 1").unwrap().unwrap();
        assert!(reason.contains("'nope' is not a uuid"), "{reason}");
        assert_eq!(Spi::get_one::<i64>("SELECT count(*) FROM pgmq.q_rag_documents").unwrap(), Some(0));
        assert_eq!(Spi::get_one::<i64>("SELECT count(*) FROM rag.documents").unwrap(), Some(1));
    }

    #[pg_test]
    fn verify_finds_a_healthy_bm25_index() {
        Spi::run("SELECT rag.ingest_document('v.txt', 'Verify counts the chunks of the BM25 index.')").unwrap();
        let (status, missing) = Spi::get_two::<String, i64>("SELECT status, missing FROM rag.verify()").unwrap();
        assert_eq!((status.as_deref(), missing), (Some("ok"), Some(0)));
        let (chunks, indexed) = Spi::get_two::<i64, i64>("SELECT chunks, bm25_indexed FROM rag.verify(repair => true)").unwrap();
        assert!(chunks.unwrap() >= 1);
        assert_eq!(chunks, indexed);
    }
}
