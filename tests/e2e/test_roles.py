"""Roles (issue 10): what a plain LOGIN role granted rag_reader, rag_writer or rag_admin (and nothing else)
may do. The functions and relations are read from the catalog, so a new function or table without a
decision here fails the test: every object gets a deliberate level."""
import contextlib
import time
import uuid

import psycopg
import pytest

LEVELS = ["nobody", "reader", "writer", "admin"]
ROLE = {"nobody": "app_nobody", "reader": "app_reader", "writer": "app_writer", "admin": "app_admin"}
NIL = "00000000-0000-0000-0000-000000000000"

# Every routine in schema rag: the lowest level that may call it, and a call that succeeds at that level.
# rag.current_tenant() and rag.visible_owners() are also executable by PUBLIC (row-level security calls
# them); they still need USAGE on the schema, which only the group roles have.
ROUTINES = {
    "rag.current_tenant()": ("reader", "SELECT rag.current_tenant()"),
    "rag.visible_owners()": ("reader", "SELECT rag.visible_owners()"),
    "rag.set_tenant(text)": ("reader", "SELECT rag.set_tenant('matrix')"),
    "rag._setting_int(text,integer)": ("reader", "SELECT rag._setting_int('rag.max_message_bytes', 1)"),
    "rag._check_search_type(text)": ("reader", "SELECT rag._check_search_type('bm25')"),
    "rag._check_title(text)": ("reader", "SELECT rag._check_title('t')"),
    "rag.bm25_search(text,integer)": ("reader", "SELECT * FROM rag.bm25_search('vacuum', 3)"),
    "rag.vector_search(text,integer)": ("reader", "SELECT * FROM rag.vector_search('vacuum', 3)"),
    "rag.hybrid_search(text,integer,jsonb,double precision,double precision,integer,integer,text)":
        ("reader", "SELECT * FROM rag.hybrid_search('vacuum', 3)"),
    "rag.embed(text,text)": ("reader", "SELECT rag.embed('x')"),
    "rag.embed_array(text,text)": ("reader", "SELECT rag.embed_array('x', 'query')"),
    "rag.embed_many(text[],text)": ("reader", "SELECT * FROM rag.embed_many(ARRAY['x'])"),
    "rag.embed_arrays(text[],text)": ("reader", "SELECT * FROM rag.embed_arrays(ARRAY['x'], 'query')"),
    "rag.create_session(text,text,text,boolean)": ("reader", "SELECT rag.create_session('matrix')"),
    "rag.list_sessions(boolean)": ("reader", "SELECT * FROM rag.list_sessions()"),
    "rag.rename_session(uuid,text)": ("reader", f"SELECT rag.rename_session('{NIL}', 'x')"),
    "rag.archive_session(uuid,boolean)": ("reader", f"SELECT rag.archive_session('{NIL}')"),
    "rag.delete_session(uuid)": ("reader", f"SELECT rag.delete_session('{NIL}')"),
    "rag.chat_append(uuid,text,text,jsonb)": ("reader", "SELECT rag.chat_append(gen_random_uuid(), 'user', 'hi')"),
    "rag.chat_history(uuid,integer)": ("reader", f"SELECT * FROM rag.chat_history('{NIL}')"),
    "rag.ask(uuid,text,integer)": ("reader", "SELECT rag.ask(gen_random_uuid(), 'what is vacuum?', 3)"),
    "rag.ingest_document(text,text,jsonb)": ("writer", "SELECT rag.ingest_document('m.txt', 'matrix text ' || gen_random_uuid())"),
    "rag.ingest_document(text,bytea,jsonb)":
        ("writer", "SELECT rag.ingest_document('m.txt', convert_to('matrix bytes ' || gen_random_uuid(), 'UTF8'))"),
    "rag.upload(text[],bytea[],jsonb)": ("writer", "SELECT rag.upload(ARRAY['u.txt'], ARRAY[convert_to('matrix upload', 'UTF8')])"),
    "rag.delete_document(uuid)": ("writer", f"SELECT rag.delete_document('{NIL}')"),
    "rag.delete_batch(uuid)": ("writer", f"SELECT rag.delete_batch('{NIL}')"),
    "rag.batch_status(uuid)": ("writer", f"SELECT * FROM rag.batch_status('{NIL}')"),
    "rag.batch_files(uuid)": ("writer", f"SELECT * FROM rag.batch_files('{NIL}')"),
    "rag.progress_channel(uuid)": ("writer", f"SELECT rag.progress_channel('{NIL}')"),
    "rag._register_model(text,integer,integer,integer)": ("writer", "SELECT rag._register_model('perm-matrix', 3, 16, 64)"),
    "rag._enqueue_batch(uuid)": ("writer", f"SELECT rag._enqueue_batch('{NIL}')"),
    "rag._staged_chunks()": ("writer", "SELECT count(*) FROM rag._staged_chunks()"),
    "rag.process_queue(integer)": ("admin", "SELECT rag.process_queue(1)"),
    "rag.reembed(bigint)": ("admin", "SELECT rag.reembed(1)"),
    "rag.reembed_all(integer)": ("admin", "CALL rag.reembed_all(100000)"),
    "rag.retry_failed(uuid)": ("admin", f"SELECT rag.retry_failed('{NIL}')"),
    "rag.verify(boolean)": ("admin", "SELECT * FROM rag.verify()"),
    "rag.cleanup_temporary_sessions()": ("admin", "SELECT rag.cleanup_temporary_sessions()"),
    "rag.status()": ("admin", "SELECT * FROM rag.status()"),
    "rag.compact()": ("admin", "SELECT rag.compact()"),
    "rag.start_workers()": ("admin", "SELECT rag.start_workers()"),
    "rag._term_stats(text[])": ("reader", "SELECT * FROM rag._term_stats(ARRAY['vacuum'])"),
    "rag._worker_processes()": ("admin", "SELECT * FROM rag._worker_processes()"),
    "rag.embedding_model_id()": ("reader", "SELECT rag.embedding_model_id()"),
}

# Every table, view and sequence: the lowest level that may read it (row-level security then decides which rows).
RELATIONS = {
    "document_files": "reader", "chunks": "reader", "documents": "reader", "embedding_models": "reader",
    "chat_sessions": "reader", "chat_messages": "reader", "chat_messages_id_seq": "reader",
    "job_batches": "writer", "job_tasks": "writer",
    "dead_letters": "admin", "dead_letters_id_seq": "admin",
    "bm25_compactions": "admin", "bm25_compactions_id_seq": "admin",
    "bm25_term_stats": "admin", "bm25_term_stats_info": "admin",
}

# Writes the application never makes directly: shared state changes only through the definer functions.
DIRECT_WRITES = {
    "INSERT INTO rag.embedding_models (model, dimensions, index_name) VALUES ('forged', 3, 'x')": "admin",
    "UPDATE rag.chunks SET content = content": "admin",
    "INSERT INTO rag.dead_letters (queue_name, msg_id, reason) VALUES ('q', 1, 'forged')": "admin",
    "SELECT pgmq.send('rag_documents', '{\"task_id\": \"00000000-0000-0000-0000-000000000000\"}')": "admin",
    "SELECT count(*) FROM pgmq.q_rag_documents": "admin",
}


@pytest.fixture(scope="module")
def conns(cluster):
    with cluster.connect() as su:
        if not su.execute("SELECT 1 FROM pg_roles WHERE rolname = 'app_nobody'").fetchone():
            su.execute("CREATE ROLE app_nobody LOGIN")
    out = {lvl: cluster.connect_as(ROLE[lvl]) for lvl in LEVELS}
    yield out
    for c in out.values():
        c.close()
    with cluster.connect() as su:
        su.execute("DELETE FROM rag.document_files WHERE file_name IN ('m.txt', 'u.txt')")
        su.execute("DELETE FROM rag.job_batches b WHERE EXISTS (SELECT 1 FROM rag.job_tasks t WHERE t.batch_id = b.id AND t.file_name = 'u.txt')")
        su.execute("DELETE FROM rag.chat_sessions WHERE title = 'matrix'")
        idx = su.execute("SELECT index_name FROM rag.embedding_models WHERE model = 'perm-matrix'").fetchone()
        if idx:
            su.execute(f'DROP INDEX IF EXISTS rag."{idx[0]}"')
            su.execute("DELETE FROM rag.embedding_models WHERE model = 'perm-matrix'")


def expected(need):
    """What each level should get for something `need` and the levels above it may do."""
    return {lvl: "ok" if LEVELS.index(lvl) >= LEVELS.index(need) else "denied" for lvl in LEVELS}


def outcome(conn, sql):
    try:
        conn.execute(sql)
        return "ok"
    except psycopg.errors.InsufficientPrivilege:
        return "denied"
    except psycopg.Error as e:
        return f"error {e.sqlstate}: {e}"


def test_every_routine_has_a_decision(cluster):
    with cluster.connect() as su:
        catalog = {r[0] for r in su.execute(
            "SELECT p.oid::regprocedure::text FROM pg_proc p WHERE p.pronamespace = 'rag'::regnamespace")}
    assert catalog == set(ROUTINES), (f"without a decision: {sorted(catalog - set(ROUTINES))}; "
                                      f"no longer exist: {sorted(set(ROUTINES) - catalog)}")


def test_every_relation_has_a_decision(cluster):
    with cluster.connect() as su:
        catalog = {r[0] for r in su.execute(
            "SELECT relname FROM pg_class WHERE relnamespace = 'rag'::regnamespace AND relkind IN ('r', 'v', 'S', 'm', 'p', 'f')")}
    assert catalog == set(RELATIONS), f"without a decision: {sorted(catalog - set(RELATIONS))}"


@pytest.mark.parametrize("routine", sorted(ROUTINES))
def test_routine_matrix(conns, routine):
    need, sql = ROUTINES[routine]
    assert {lvl: outcome(conns[lvl], sql) for lvl in LEVELS} == expected(need)


@pytest.mark.parametrize("relation", sorted(RELATIONS))
def test_relation_matrix(conns, relation):
    need = RELATIONS[relation]
    sql = f"SELECT nextval('rag.{relation}')" if relation.endswith("_seq") else f"SELECT count(*) FROM rag.{relation}"
    assert {lvl: outcome(conns[lvl], sql) for lvl in LEVELS} == expected(need)


@pytest.mark.parametrize("sql", sorted(DIRECT_WRITES))
def test_shared_state_is_written_only_through_the_extension(conns, sql):
    want = expected(DIRECT_WRITES[sql])
    for lvl in LEVELS:
        conn = conns[lvl]
        with conn.transaction(force_rollback=True) if lvl == "admin" else contextlib.nullcontext():
            got = outcome(conn, sql)
        assert got == want[lvl], (lvl, got)


def test_security_definer_functions_pin_search_path(cluster):
    with cluster.connect() as su:
        rows = su.execute("""SELECT p.oid::regprocedure::text, coalesce(array_to_string(p.proconfig, ','), '')
                             FROM pg_proc p WHERE p.pronamespace = 'rag'::regnamespace AND p.prosecdef""").fetchall()
    assert {r[0] for r in rows} == {"rag._register_model(text,integer,integer,integer)", "rag._enqueue_batch(uuid)",
                                    "rag.verify(boolean)", "rag._worker_processes()", "rag._term_stats(text[])"}
    for name, config in rows:
        assert config == "search_path=pg_catalog, pg_temp", (name, config)


def test_group_roles_are_nologin_and_nested(cluster):
    with cluster.connect() as su:
        login = dict(su.execute("SELECT rolname, rolcanlogin FROM pg_roles WHERE rolname LIKE 'rag\\_%'").fetchall())
        assert login == {"rag_reader": False, "rag_writer": False, "rag_admin": False, "rag_worker": False}
        for member, group in [("rag_writer", "rag_reader"), ("rag_admin", "rag_writer"), ("rag_worker", "rag_admin")]:
            assert su.execute("SELECT pg_has_role(%s, %s, 'USAGE')", (member, group)).fetchone()[0]
        assert not su.execute("SELECT pg_has_role('rag_reader', 'rag_writer', 'MEMBER')").fetchone()[0]


def test_the_worker_acts_as_rag_worker(cluster, su):
    """Queue work is done as rag.worker_role, not as the superuser it connects as, and the document it
    stores belongs to the uploader. A trigger records who inserts the document row."""
    assert su.execute("SHOW rag.worker_role").fetchone()[0] == "rag_worker"
    assert not su.execute("SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = 'rag_worker'").fetchone()[0]
    su.execute("CREATE TABLE IF NOT EXISTS public.inserted_by (who text, owner text, file_name text)")
    su.execute("GRANT INSERT ON public.inserted_by TO PUBLIC")
    su.execute("""CREATE OR REPLACE FUNCTION public.record_inserter() RETURNS trigger LANGUAGE plpgsql AS $$
                  BEGIN INSERT INTO public.inserted_by VALUES (current_user, NEW.owner, NEW.file_name); RETURN NEW; END $$""")
    su.execute("CREATE TRIGGER record_inserter BEFORE INSERT ON rag.document_files "
               "FOR EACH ROW EXECUTE FUNCTION public.record_inserter()")
    try:
        with cluster.connect_as("app_writer") as app:
            batch = app.execute("SELECT rag.upload(ARRAY['worker-role.txt'], ARRAY[convert_to(%s, 'UTF8')])",
                                (f"Worker role check {uuid.uuid4()}",)).fetchone()[0]
            for _ in range(240):
                status = app.execute("SELECT status FROM rag.batch_status(%s)", (batch,)).fetchone()[0]
                if status in ("completed", "failed"):
                    break
                time.sleep(0.5)
            assert status == "completed"
            owner = app.execute("SELECT d.owner FROM rag.batch_files(%s) f JOIN rag.documents d ON d.id = f.document_id",
                                (batch,)).fetchone()[0]
            assert owner == "app_writer"
        assert su.execute("SELECT who, owner FROM public.inserted_by WHERE file_name = 'worker-role.txt'").fetchall() \
            == [("rag_worker", "app_writer")]
    finally:
        su.execute("DROP TRIGGER IF EXISTS record_inserter ON rag.document_files")
        su.execute("DROP FUNCTION IF EXISTS public.record_inserter() CASCADE")
        su.execute("DROP TABLE IF EXISTS public.inserted_by")
