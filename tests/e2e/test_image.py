"""The Docker image's configuration, without a Docker engine (issue 13, item 4): a cluster made the way the
image's entrypoint makes it — initdb, POSTGRES_DB created, docker/initdb/*.sh run against it, then the server
started with the Dockerfile's own CMD settings — processes an upload with its background worker.

The same server then shows the launcher (src/queue/launcher.rs): CREATE EXTENSION in a second database starts
that database's worker without a restart, rag.worker_databases narrows the set on reload, and DROP EXTENSION
lets the worker go (so a plain DROP DATABASE works)."""
import json
import os
import re
import shutil
import subprocess
import time

import psycopg

from conftest import PG_BIN, ROOT, RUN_USER, as_run_user as as_user, stop_server

PSQL_DIR = "/usr/lib/postgresql/15/bin"
PORT = "55435"
DB = "ragbench"  # POSTGRES_DB in docker/docker-compose.yml


def cmd_settings():
    """The `-c name=value` settings of the Dockerfile's CMD."""
    cmd = re.search(r"^CMD (\[.*\])$", (ROOT / "Dockerfile").read_text(), re.M)
    args = json.loads(cmd.group(1))
    assert args[0] == "postgres"
    return [args[i + 1] for i, a in enumerate(args) if a == "-c"]


def test_the_image_configuration_processes_an_upload():
    tmp_path = ROOT / ".stack" / "image-test"  # the server's OS user must reach it (pytest's tmp is root-only)
    shutil.rmtree(tmp_path, ignore_errors=True)
    tmp_path.mkdir(parents=True)
    data = tmp_path / "pgdata"
    data.mkdir()
    shutil.chown(data, RUN_USER)
    log = tmp_path / "server.log"
    log.touch()
    shutil.chown(log, RUN_USER)
    as_user([str(PG_BIN / "initdb"), "-D", str(data), "-U", RUN_USER, "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8"])
    options = " ".join(f"-c {s}" for s in cmd_settings() + [f"port={PORT}", "listen_addresses=127.0.0.1",
                                                           "unix_socket_directories=/tmp"])
    ctl = [str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60"]
    as_user(ctl + ["-o", options, "start"])
    try:
        url = f"postgresql://{RUN_USER}@127.0.0.1:{PORT}"
        with psycopg.connect(f"{url}/postgres", autocommit=True) as c:
            c.execute(f"CREATE DATABASE {DB}")  # what the entrypoint does for POSTGRES_DB
        env = dict(os.environ, POSTGRES_USER=RUN_USER, POSTGRES_DB=DB, PGHOST="127.0.0.1", PGPORT=PORT,
                   PATH=f"{PSQL_DIR}:{os.environ['PATH']}")
        for script in sorted((ROOT / "docker" / "initdb").glob("*.sh")):
            subprocess.run(["bash", str(script)], check=True, env=env, capture_output=True)
        # the entrypoint stops its init server and starts the real one (here logging at DEBUG1 as well, so
        # that the test can count the launcher's worker registrations)
        as_user(ctl + ["-m", "fast", "stop"])
        started = log.read_text().count('registering background worker "ragbench worker')
        as_user(ctl + ["-o", options + " -c log_min_messages=debug1", "start"])
        with psycopg.connect(f"{url}/{DB}", autocommit=True) as c:
            assert c.execute("SHOW rag.worker_databases").fetchone()[0] == ""  # every database with the extension
            assert_upload_processed(c, "image.txt", "The image runs its worker in the right database.",
                                    "worker database", log)
            # one registration for the one database with the extension (and none churning after it)
            time.sleep(2)
            registered = log.read_text().count(f'registering background worker "ragbench worker 0 for database {DB}"')
            assert registered - started == 1, f"{registered - started} registrations since the start"
        launcher_serves_new_databases(url, log)
    finally:
        stop_server(data)
        shutil.rmtree(tmp_path, ignore_errors=True)


def wait_batch(c, batch, seconds=180):
    deadline = time.time() + seconds
    status = None
    while time.time() < deadline:
        status = c.execute("SELECT status FROM rag.batch_status(%s)", (batch,)).fetchone()[0]
        if status in ("completed", "failed", "partially failed"):
            break
        time.sleep(0.5)
    return status


def assert_upload_processed(c, name, text, query, log):
    batch = c.execute("SELECT rag.upload(ARRAY[%s], ARRAY[convert_to(%s, 'UTF8')])", (name, text)).fetchone()[0]
    assert wait_batch(c, batch) == "completed", log.read_text()[-3000:]
    assert c.execute("SELECT count(*) FROM rag.bm25_search(%s, 5)", (query,)).fetchone()[0] == 1


def workers(c, db):
    return c.execute("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'ragbench worker' AND datname = %s",
                     (db,)).fetchone()[0]


def wait_workers(c, db, n, seconds=30):
    deadline = time.time() + seconds
    while workers(c, db) != n and time.time() < deadline:
        time.sleep(0.2)
    return workers(c, db)


def launcher_serves_new_databases(url, log):
    with psycopg.connect(f"{url}/postgres", autocommit=True) as admin:
        assert admin.execute("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'ragbench launcher'"
                             ).fetchone()[0] == 1
        # Databases without the extension hold no worker (a probe exits at once).
        assert wait_workers(admin, "postgres", 0) == 0
        # The launcher does not churn: over 3 quiet seconds the postmaster registers no new worker for the
        # database whose worker runs (databases without the extension are probed with a growing delay).
        mark = f'registering background worker "ragbench worker 0 for database {DB}"'
        before = log.read_text().count(mark)
        time.sleep(3)
        registered = log.read_text().count(mark) - before
        assert registered == 0, f"{registered} worker registrations in 3 quiet seconds"
        admin.execute("CREATE DATABASE second")
        with psycopg.connect(f"{url}/second", autocommit=True) as c:
            c.execute("SET client_min_messages = warning")
            c.execute("CREATE EXTENSION ragbench CASCADE")
            # no restart: CREATE EXTENSION started the worker, which waited for the commit
            assert wait_workers(admin, "second", 1) == 1
            assert_upload_processed(c, "second.txt", "A second database gets its own ingestion worker.",
                                    "second database worker", log)
            # rag.start_workers() starts nothing while the worker runs, and brings back a terminated one
            assert c.execute("SELECT rag.start_workers()").fetchone()[0] == 0
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE backend_type = 'ragbench worker' AND datname = 'second'")
            assert wait_workers(admin, "second", 0) == 0
            assert c.execute("SELECT rag.start_workers()").fetchone()[0] == 1
            assert wait_workers(admin, "second", 1) == 1
            time.sleep(1)
            assert workers(admin, "second") == 1  # the launcher's probe did not add a duplicate

            # rag.worker_databases narrows the set on reload: the worker of `second` stops, uploads wait
            admin.execute(f"ALTER SYSTEM SET rag.worker_databases = '{DB}'")
            admin.execute("SELECT pg_reload_conf()")
            assert wait_workers(admin, "second", 0) == 0
            assert workers(admin, DB) == 1
            batch = c.execute("SELECT rag.upload(ARRAY['later.txt'], ARRAY[convert_to('Processed once allowed again.', "
                              "'UTF8')])").fetchone()[0]
            time.sleep(3)
            assert c.execute("SELECT status FROM rag.batch_status(%s)", (batch,)).fetchone()[0] == "pending"
            admin.execute("ALTER SYSTEM RESET rag.worker_databases")
            admin.execute("SELECT pg_reload_conf()")
            # the launcher looks again at once on reload
            assert wait_batch(c, batch, 60) == "completed", log.read_text()[-3000:]

            # DROP EXTENSION lets the worker go, so a plain DROP DATABASE works
            c.execute("DROP EXTENSION ragbench CASCADE")
            assert wait_workers(admin, "second", 0) == 0
        admin.execute("DROP DATABASE second")
