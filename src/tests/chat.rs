use pgrx::prelude::*;

#[pg_schema]
mod tests {
    use pgrx::prelude::*;
    use pgrx::Uuid;

    #[pg_test]
    fn append_creates_session_and_history_is_ordered() {
        let sid = "7f2d5a4e-0000-4000-8000-000000000001";
        for (role, text) in [("user", "first"), ("assistant", "second"), ("user", "third")] {
            Spi::run_with_args(
                &format!("SELECT rag.chat_append('{sid}', $1, $2)"),
                &[role.into(), text.into()],
            )
            .unwrap();
        }
        let all = Spi::get_one::<Vec<String>>(&format!("SELECT array_agg(content) FROM rag.chat_history('{sid}')")).unwrap().unwrap();
        assert_eq!(all, vec!["first", "second", "third"]);
        let last2 = Spi::get_one::<Vec<String>>(&format!("SELECT array_agg(content) FROM rag.chat_history('{sid}', 2)")).unwrap().unwrap();
        assert_eq!(last2, vec!["second", "third"]);
        assert_eq!(
            Spi::get_one::<String>(&format!("SELECT title FROM rag.list_sessions() WHERE id = '{sid}'")).unwrap().as_deref(),
            Some("New Chat")
        );
    }

    #[pg_test]
    fn session_lifecycle() {
        let id = Spi::get_one::<Uuid>("SELECT rag.create_session('Tuning', NULL, 'bm25', false)").unwrap().unwrap();
        assert!(Spi::get_one_with_args::<bool>("SELECT rag.rename_session($1, 'HNSW tuning')", &[id.into()]).unwrap().unwrap());
        assert!(Spi::get_one_with_args::<bool>("SELECT rag.archive_session($1)", &[id.into()]).unwrap().unwrap());
        assert_eq!(Spi::get_one::<i64>("SELECT count(*) FROM rag.list_sessions()").unwrap(), Some(0));
        assert_eq!(Spi::get_one::<String>("SELECT title FROM rag.list_sessions(true)").unwrap().as_deref(), Some("HNSW tuning"));
        assert!(Spi::get_one_with_args::<bool>("SELECT rag.delete_session($1)", &[id.into()]).unwrap().unwrap());
        assert!(!Spi::get_one_with_args::<bool>("SELECT rag.delete_session($1)", &[id.into()]).unwrap().unwrap());
    }

    #[pg_test]
    fn temporary_sessions_expire() {
        Spi::run("SELECT rag.create_session('tmp', NULL, 'hybrid', true)").unwrap();
        Spi::run("SELECT rag.create_session('keep')").unwrap();
        Spi::run("UPDATE rag.chat_sessions SET updated_at = now() - interval '2 days'").unwrap();
        assert_eq!(Spi::get_one::<i64>("SELECT rag.cleanup_temporary_sessions()").unwrap(), Some(1));
        assert_eq!(Spi::get_one::<String>("SELECT title FROM rag.chat_sessions").unwrap().as_deref(), Some("keep"));
    }

    #[pg_test(error = "unknown role 'robot'")]
    fn unknown_role_is_refused() {
        Spi::run("SELECT rag.chat_append(gen_random_uuid(), 'robot', 'hi')").unwrap();
    }

    #[pg_test(error = "message content must not be empty")]
    fn empty_message_is_refused() {
        Spi::run("SELECT rag.chat_append(gen_random_uuid(), 'user', '   ')").unwrap();
    }

    #[pg_test(error = "unknown search_type 'fuzzy'")]
    fn unknown_search_type_is_refused() {
        Spi::run("SELECT rag.create_session('x', NULL, 'fuzzy')").unwrap();
    }

    #[pg_test]
    fn one_megabyte_message_is_stored() {
        Spi::run("SELECT rag.chat_append('7f2d5a4e-0000-4000-8000-000000000002', 'user', repeat('a', 1048576))").unwrap();
        assert_eq!(
            Spi::get_one::<i32>("SELECT octet_length(content) FROM rag.chat_history('7f2d5a4e-0000-4000-8000-000000000002')").unwrap(),
            Some(1048576)
        );
    }

    #[pg_test(error = "message is 5242880 bytes; rag.max_message_bytes allows 4194304")]
    fn oversized_message_is_refused() {
        Spi::run("SELECT rag.chat_append(gen_random_uuid(), 'user', repeat('a', 5242880))").unwrap();
    }
}
