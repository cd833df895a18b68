use pgrx::prelude::*;

#[pg_schema]
mod tests {
    use pgrx::prelude::*;

    /// Three small documents: one with a rare code only BM25 can match exactly, one that only a paraphrase
    /// reaches, and one on the shared topic.
    fn load_corpus() {
        for (name, text) in [
            (
                "errors.md",
                "# Error codes\n\nThe server reports error XQ-7741 when the replication slot file is corrupt. \
                 Recreate the slot to recover.",
            ),
            (
                "cats.md",
                "# Pets\n\nKittens need a warm place to sleep and fresh water every day. \
                 Young felines play a lot.",
            ),
            (
                "vacuum.md",
                "# Vacuum\n\nVACUUM reclaims storage occupied by dead tuples. Run it regularly on busy tables \
                 so that disk space is reused.",
            ),
        ] {
            Spi::run_with_args(
                "SELECT rag.ingest_document($1, $2, jsonb_build_object('topic', $3))",
                &[name.into(), text.into(), name.trim_end_matches(".md").into()],
            )
            .unwrap();
        }
    }

    fn first(sql: &str) -> Option<String> {
        Spi::get_one::<String>(sql).unwrap()
    }

    #[pg_test]
    fn embed_many_gives_one_vector_per_input_in_order_like_embed() {
        // each row's vector is (within float noise of batching) rag.embed of the same input
        let ok = Spi::get_one::<bool>(
            "SELECT count(*) = 3 AND max(e.embedding <=> rag.embed(t.x, 'document')) < 1e-5
             FROM rag.embed_many(ARRAY['vacuum reclaims space', 'kittens sleep', 'vacuum reclaims space'], 'document') e
             JOIN unnest(ARRAY['vacuum reclaims space', 'kittens sleep', 'vacuum reclaims space'])
                  WITH ORDINALITY AS t(x, n) ON t.n = e.ordinality",
        )
        .unwrap();
        assert_eq!(ok, Some(true));
        // different texts, different vectors: the order is not shuffled
        let d = Spi::get_one::<f64>(
            "SELECT a.embedding <=> b.embedding FROM rag.embed_many(ARRAY['vacuum reclaims space', 'kittens sleep']) a,
                    rag.embed_many(ARRAY['vacuum reclaims space', 'kittens sleep']) b
             WHERE a.ordinality = 1 AND b.ordinality = 2",
        )
        .unwrap()
        .unwrap();
        assert!(d > 0.2, "distance {d}");
    }

    #[pg_test(error = "inputs[2] is NULL")]
    fn embed_many_refuses_null_inputs() {
        Spi::run("SELECT count(*) FROM rag.embed_many(ARRAY['a', NULL, 'c'])").unwrap();
    }

    #[pg_test]
    fn bm25_index_keeps_no_mutable_segment_that_searches_would_reindex() {
        load_corpus();
        let mutable = Spi::get_one::<bool>(
            "SELECT coalesce(bool_or(mutable), false) FROM paradedb.index_info('rag.chunks_bm25')",
        )
        .unwrap();
        assert_eq!(mutable, Some(false));
    }

    #[pg_test]
    fn bm25_finds_exact_rare_term_first() {
        load_corpus();
        assert_eq!(first("SELECT file_name FROM rag.bm25_search('XQ-7741', 3) LIMIT 1").as_deref(), Some("errors.md"));
        // stemming: "reclaiming" matches "reclaims"
        assert_eq!(first("SELECT file_name FROM rag.bm25_search('reclaiming storage', 3) LIMIT 1").as_deref(), Some("vacuum.md"));
    }

    #[pg_test]
    fn bm25_treats_query_syntax_as_terms() {
        load_corpus();
        let n = Spi::get_one::<i64>(
            r#"SELECT count(*) FROM rag.bm25_search('vacuum AND OR NOT ( : " * ~ ^ - ) title:foo', 5)"#,
        )
        .unwrap()
        .unwrap();
        assert!(n >= 1);
        assert_eq!(
            first(r#"SELECT file_name FROM rag.bm25_search('NOT vacuum', 3) LIMIT 1"#).as_deref(),
            Some("vacuum.md"),
            "NOT is a word, not an operator"
        );
        let none = Spi::get_one::<i64>("SELECT count(*) FROM rag.bm25_search('?!.,;:()\"', 5)").unwrap().unwrap();
        assert_eq!(none, 0);
    }

    #[pg_test(error = "k must be between 1 and 10000, got 0")]
    fn bm25_rejects_k_zero() {
        Spi::run("SELECT * FROM rag.bm25_search('vacuum', 0)").unwrap();
    }

    #[pg_test(error = "k must be between 1 and 10000, got 1000000")]
    fn bm25_rejects_huge_k() {
        Spi::run("SELECT * FROM rag.bm25_search('vacuum', 1000000)").unwrap();
    }

    #[pg_test]
    fn vector_search_finds_paraphrase() {
        load_corpus();
        assert_eq!(
            first("SELECT file_name FROM rag.vector_search('caring for baby cats', 3) LIMIT 1").as_deref(),
            Some("cats.md")
        );
    }

    #[pg_test]
    fn embed_returns_a_normalised_vector() {
        let (dims, norm) = Spi::get_two::<i32, f64>("SELECT vector_dims(rag.embed('hello')), vector_norm(rag.embed('hello'))").unwrap();
        assert_eq!(dims, Some(384));
        assert!((norm.unwrap() - 1.0).abs() < 1e-4);
    }

    #[pg_test]
    fn hybrid_combines_both_legs() {
        load_corpus();
        // exact code: BM25 leg carries it
        let (name, br) = Spi::get_two::<String, i32>("SELECT file_name, bm25_rank FROM rag.hybrid_search('XQ-7741', 3) LIMIT 1").unwrap();
        assert_eq!(name.as_deref(), Some("errors.md"));
        assert_eq!(br, Some(1));
        // paraphrase without shared words: the vector leg carries it
        let (name, vr) = Spi::get_two::<String, i32>("SELECT file_name, vector_rank FROM rag.hybrid_search('caring for baby cats', 3) LIMIT 1").unwrap();
        assert_eq!(name.as_deref(), Some("cats.md"));
        assert_eq!(vr, Some(1));
        // both legs agree
        let (b, v) = Spi::get_two::<i32, i32>("SELECT bm25_rank, vector_rank FROM rag.hybrid_search('reclaim disk space of dead tuples with vacuum', 3) LIMIT 1").unwrap();
        assert_eq!((b, v), (Some(1), Some(1)));
    }

    #[pg_test]
    fn hybrid_with_zero_weight_is_the_other_leg() {
        load_corpus();
        let q = "vacuum storage for kittens";
        let hybrid = Spi::get_one_with_args::<Vec<String>>(
            "SELECT array_agg(chunk_id::text) FROM rag.hybrid_search($1, 3, NULL, 0.0, 1.0)",
            &[q.into()],
        )
        .unwrap();
        let vector = Spi::get_one_with_args::<Vec<String>>(
            "SELECT array_agg(chunk_id::text) FROM rag.vector_search($1, 3)",
            &[q.into()],
        )
        .unwrap();
        assert_eq!(hybrid, vector);
        let hybrid = Spi::get_one_with_args::<Vec<String>>(
            "SELECT array_agg(chunk_id::text) FROM rag.hybrid_search($1, 3, NULL, 1.0, 0.0)",
            &[q.into()],
        )
        .unwrap();
        let bm25 = Spi::get_one_with_args::<Vec<String>>(
            "SELECT array_agg(chunk_id::text) FROM rag.bm25_search($1, 3)",
            &[q.into()],
        )
        .unwrap();
        assert_eq!(hybrid, bm25);
    }

    #[pg_test]
    fn hybrid_filter_applies_inside_both_legs() {
        load_corpus();
        let names = Spi::get_one::<Vec<String>>(
            r#"SELECT array_agg(file_name) FROM rag.hybrid_search('vacuum dead tuples', 5, '{"topic": "cats"}')"#,
        )
        .unwrap()
        .unwrap();
        assert_eq!(names, vec!["cats.md".to_string()]);
    }

    #[pg_test(error = "bm25_weight and vector_weight are both 0")]
    fn hybrid_rejects_zero_weights() {
        Spi::run("SELECT * FROM rag.hybrid_search('x', 5, NULL, 0, 0)").unwrap();
    }

    #[pg_test]
    fn search_statements_use_the_configured_parallel_workers_and_restore_the_session() {
        let setting = || first("SELECT current_setting('max_parallel_workers_per_gather')");
        Spi::run("SET max_parallel_workers_per_gather = 5").unwrap();
        for (configured, inside) in [("0", "0"), ("3", "3")] {
            Spi::run_with_args("SELECT set_config('rag.search_parallel_workers', $1, false)", &[configured.into()]).unwrap();
            {
                let _plan = crate::search::index_only_plan(100);
                assert_eq!(setting().as_deref(), Some(inside));
            }
            assert_eq!(setting().as_deref(), Some("5"), "the caller's own setting comes back");
        }
        Spi::run("RESET rag.search_parallel_workers").unwrap();
        assert_eq!(first("SHOW rag.search_parallel_workers").as_deref(), Some("0"), "no parallel workers by default");
    }
}
