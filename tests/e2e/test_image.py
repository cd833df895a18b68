"""The Docker image's configuration, without a Docker engine (issue 13, item 4): a cluster made the way the
image's entrypoint makes it — initdb, POSTGRES_DB created, docker/initdb/*.sh run against it, then the server
started with the Dockerfile's own CMD settings — processes an upload with its background worker."""
import json
import os
import re
import shutil
import subprocess
import time

import psycopg

from conftest import PG_BIN, ROOT, RUN_USER, as_run_user as as_user, stop_server

PSQL_DIR = "/usr/lib/postgresql/15/bin"
PORT = "55431"
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
        # the entrypoint stops its init server and starts the real one
        as_user(ctl + ["-m", "fast", "stop"])
        as_user(ctl + ["-o", options, "start"])
        with psycopg.connect(f"{url}/{DB}", autocommit=True) as c:
            assert c.execute("SHOW rag.worker_databases").fetchone()[0] == DB
            batch = c.execute("SELECT rag.upload(ARRAY['image.txt'], "
                              "ARRAY[convert_to('The image runs its worker in the right database.', 'UTF8')])").fetchone()[0]
            deadline = time.time() + 180
            while time.time() < deadline:
                status = c.execute("SELECT status FROM rag.batch_status(%s)", (batch,)).fetchone()[0]
                if status in ("completed", "failed", "partially failed"):
                    break
                time.sleep(1)
            assert status == "completed", log.read_text()[-2000:]
            assert c.execute("SELECT count(*) FROM rag.bm25_search('worker database', 5)").fetchone()[0] == 1
    finally:
        stop_server(data)
        shutil.rmtree(tmp_path, ignore_errors=True)
