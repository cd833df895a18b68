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
}
