use pgrx::prelude::*;

#[pg_schema]
mod tests {
    use pgrx::prelude::*;
    use pgrx::Uuid;

    fn count(sql: &str) -> i64 {
        Spi::get_one::<i64>(sql).expect("query").expect("a count")
    }

    const GUIDE: &str = "# Vacuuming\n\nVACUUM reclaims storage occupied by dead tuples. \
    It should be run periodically.\n\n## Autovacuum\n\nThe autovacuum daemon automates VACUUM and ANALYZE.";

    #[pg_test]
    fn ingest_stores_document_and_chunks_with_context() {
        let id = Spi::get_one_with_args::<Uuid>("SELECT rag.ingest_document('guide.md', $1)", &[GUIDE.into()])
            .unwrap()
            .unwrap();
        let (ty, chunks) = Spi::get_two::<String, i64>(
            "SELECT file_type, chunk_count FROM rag.documents WHERE file_name = 'guide.md'",
        )
        .unwrap();
        assert_eq!(ty.as_deref(), Some("markdown"));
        assert!(chunks.unwrap() >= 2, "one chunk per section at least");
        // headings survive as context, markup does not
        let ctx = Spi::get_one_with_args::<String>(
            "SELECT content_with_context FROM rag.chunks WHERE document_id = $1 AND content LIKE '%daemon%'",
            &[id.into()],
        )
        .unwrap()
        .unwrap();
        assert!(ctx.contains("Autovacuum"), "{ctx}");
        assert!(!ctx.contains("##"), "{ctx}");
        // every chunk has a 384-d vector of the built-in model
        assert_eq!(
            count("SELECT count(*) FROM rag.chunks WHERE embedding_model = 'builtin/all-MiniLM-L6-v2' AND vector_dims(embedding) = 384"),
            chunks.unwrap()
        );
    }

    #[pg_test]
    fn same_content_gives_same_id_and_no_new_chunks() {
        let a = Spi::get_one_with_args::<Uuid>("SELECT rag.ingest_document('a.md', $1)", &[GUIDE.into()]).unwrap();
        let n = count("SELECT count(*) FROM rag.chunks");
        let b = Spi::get_one_with_args::<Uuid>("SELECT rag.ingest_document('copy-of-a.md', $1)", &[GUIDE.into()]).unwrap();
        assert_eq!(a, b);
        assert_eq!(n, count("SELECT count(*) FROM rag.chunks"));
        assert_eq!(1, count("SELECT count(*) FROM rag.document_files"));
    }

    #[pg_test]
    fn delete_document_removes_its_chunks() {
        let id = Spi::get_one_with_args::<Uuid>("SELECT rag.ingest_document('a.md', $1)", &[GUIDE.into()]).unwrap().unwrap();
        Spi::run("SELECT rag.ingest_document('b.txt', 'Another document about replication slots.')").unwrap();
        assert!(Spi::get_one_with_args::<bool>("SELECT rag.delete_document($1)", &[id.into()]).unwrap().unwrap());
        assert_eq!(0, count(&format!("SELECT count(*) FROM rag.chunks WHERE document_id = '{id}'")));
        assert_eq!(1, count("SELECT count(*) FROM rag.documents"));
        // deleting again is not an error, just false
        assert!(!Spi::get_one_with_args::<bool>("SELECT rag.delete_document($1)", &[id.into()]).unwrap().unwrap());
    }

    #[pg_test]
    fn html_is_cleaned() {
        let html = "<html><head><title>Page</title><style>p{color:red}</style><script>alert('x')</script></head>\
                    <body><h1>Heading One</h1><p>Visible &amp; clean text.</p></body></html>";
        Spi::run_with_args("SELECT rag.ingest_document('p.html', $1)", &[html.into()]).unwrap();
        let all = Spi::get_one::<String>("SELECT string_agg(content_with_context, ' ') FROM rag.chunks").unwrap().unwrap();
        assert!(all.contains("Visible & clean text."), "{all}");
        assert!(!all.contains("alert") && !all.contains("color:red") && !all.contains('<'), "{all}");
    }

    #[pg_test(error = "cannot ingest 'empty.txt': document \"empty.txt\" contains no text after parsing (it is empty, whitespace only, or only markup)")]
    fn empty_content_is_refused() {
        Spi::run("SELECT rag.ingest_document('empty.txt', '')").unwrap();
    }

    #[pg_test(error = "cannot ingest 'blank.txt': document \"blank.txt\" contains no text after parsing (it is empty, whitespace only, or only markup)")]
    fn whitespace_content_is_refused() {
        Spi::run("SELECT rag.ingest_document('blank.txt', E'  \\n\\t  ')").unwrap();
    }

    #[pg_test(error = "file_name is 10000 characters long; the limit is 1024")]
    fn long_file_name_is_refused() {
        Spi::run("SELECT rag.ingest_document(repeat('x', 10000), 'text')").unwrap();
    }

    #[pg_test(error = "file_name must not be empty")]
    fn empty_file_name_is_refused() {
        Spi::run("SELECT rag.ingest_document('  ', 'text')").unwrap();
    }

    #[pg_test(error = "metadata must be a JSON object, got an array")]
    fn metadata_must_be_an_object() {
        Spi::run("SELECT rag.ingest_document('a.txt', 'text', '[1,2]')").unwrap();
    }

    #[pg_test(error = "document 'big.txt' is 20971520 bytes; rag.max_document_bytes allows 16777216")]
    fn oversized_document_is_refused() {
        Spi::run("SELECT rag.ingest_document('big.txt', repeat('word ', 4194304))").unwrap();
    }

    #[pg_test(error = "rag.chunk_overlap (200) must be smaller than rag.chunk_size (100)")]
    fn overlap_must_be_smaller_than_chunk_size() {
        Spi::run("SET rag.chunk_size = 100").unwrap();
        Spi::run("SET rag.chunk_overlap = 200").unwrap();
        Spi::run("SELECT rag.ingest_document('a.txt', 'Some text here.')").unwrap();
    }

    #[pg_test]
    fn chunks_respect_chunk_size_in_model_tokens() {
        Spi::run("SET rag.chunk_size = 64").unwrap();
        Spi::run("SET rag.chunk_overlap = 8").unwrap();
        let text = (0..200).map(|i| format!("Sentence number {i} talks about write-ahead logging.")).collect::<Vec<_>>().join(" ");
        Spi::run_with_args("SELECT rag.ingest_document('long.txt', $1)", &[text.as_str().into()]).unwrap();
        assert!(count("SELECT count(*) FROM rag.chunks") > 10);
        assert_eq!(0, count("SELECT count(*) FROM rag.chunks WHERE token_count > 64"));
        assert_eq!(0, count("SELECT count(*) FROM rag.chunks WHERE token_count = 0"));
    }

    #[pg_test]
    fn reembed_fills_missing_and_skips_current_vectors() {
        Spi::run_with_args("SELECT rag.ingest_document('guide.md', $1)", &[GUIDE.into()]).unwrap();
        assert_eq!(Spi::get_one::<i64>("SELECT rag.reembed()").unwrap(), Some(0), "all vectors are current");
        let before = Spi::get_one::<String>("SELECT embedding::text FROM rag.chunks ORDER BY chunk_index LIMIT 1").unwrap();
        Spi::run("UPDATE rag.chunks SET embedding = NULL, embedding_model = NULL").unwrap();
        let n = count("SELECT count(*) FROM rag.chunks");
        assert_eq!(Spi::get_one::<i64>("SELECT rag.reembed(1)").unwrap(), Some(1), "slices");
        assert_eq!(Spi::get_one::<i64>("SELECT rag.reembed()").unwrap(), Some(n - 1));
        let distance = Spi::get_one_with_args::<f64>(
            "SELECT embedding <=> $1::vector FROM rag.chunks ORDER BY chunk_index LIMIT 1",
            &[before.unwrap().into()],
        )
        .unwrap()
        .unwrap();
        assert!(distance < 1e-4, "same model, same text, same vector (distance {distance})");
        assert_eq!(0, count("SELECT count(*) FROM rag.chunks WHERE embedding IS NULL"));
    }
}
