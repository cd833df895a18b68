# ragbench — one entry point. The README's two commands are `make run` and `make test`.
SHELL := /bin/bash
ROOT  := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))
STACK := $(ROOT)/.stack
PG_CONFIG := $(STACK)/pg/bin/pg_config
PY    := $(STACK)/venv/bin/python
export PGRX_HOME := $(STACK)/pgrx
export PG_BIN := $(STACK)/pg/bin
export RUN_USER ?= ragbench
export PGPORT ?= 55417
export PGDATA ?= $(ROOT)/.pgdata
export DB ?= ragbench
export PSQL := /usr/lib/postgresql/15/bin/psql
URL = postgresql://$(RUN_USER)@127.0.0.1:$(PGPORT)/$(DB)
DATASET ?= ../shared/datasets/scifact

.PHONY: setup install start stop restart psql url run test test-unit test-e2e eval eval-deps eval-peer bench bench-search bench-ingest bench-bm25 bench-embed fuzz clean

## Install everything on a fresh machine (idempotent; seconds when done before).
setup:
	@bash scripts/setup.sh

## Build the extension (release) and install it into the local PostgreSQL.
install: setup
	@cargo pgrx install --release --pg-config $(PG_CONFIG) >/dev/null

## Start the local cluster with the extension preloaded and created.
start: install
	@bash scripts/cluster.sh start
	@echo "cluster up: $(URL)"

stop:
	@bash scripts/cluster.sh stop 2>/dev/null || true

restart: stop start

psql:
	@$(PSQL) "$(URL)"

url:
	@echo "$(URL)"

## README command 1: set up, build, start, load the demo corpus, show real search results.
run: start
	@$(PY) scripts/demo.py "$(URL)"

## README command 2: every test (Rust unit + #[pg_test] + end-to-end), leaving no server behind.
test: setup
	@bash scripts/test.sh

## Retrieval quality on every judged BEIR set under ../shared/datasets (a directory with qrels/test.tsv),
## or on DATASET=dir alone: nDCG@10, Recall@100, MRR@10 of BM25, vector and hybrid (convex, rrf), and the
## per-query wins and losses of hybrid against the better leg; then eval-results/eval-report.md (Markdown)
## and eval-results/eval-ndcg.png (nDCG@10 per method and set), with one JSON file per set beside them.
DATASETS ?= $(patsubst %/qrels/test.tsv,%,$(wildcard ../shared/datasets/*/qrels/test.tsv))
EVAL_SETS = $(if $(filter command environment,$(firstword $(origin DATASET))),$(DATASET),$(DATASETS))
EVAL_OUT ?= $(ROOT)/eval-results
eval: start eval-deps
	@sets="$(strip $(EVAL_SETS))"; \
	[ -n "$$sets" ] || { echo "[eval] no dataset with qrels/test.tsv under ../shared/datasets" >&2; exit 1; }; \
	mkdir -p "$(EVAL_OUT)"; jsons=(); \
	for d in $$sets; do \
	  out="$(EVAL_OUT)/$$(basename "$${d%/}").json"; \
	  echo "[eval] $$d"; \
	  $(PY) scripts/eval.py "$(URL)" "$$d" --json-out "$$out" || exit 1; \
	  jsons+=("$$out"); \
	done; \
	$(PY) scripts/eval_report.py "$(EVAL_OUT)" "$${jsons[@]}"

## The Python packages of eval and eval-peer: clients/python/requirements-eval.txt (pinned, hashed:
## matplotlib for the report's plot, LlamaIndex's Postgres store for the peer), installed into .stack/venv
## when the file changed since the last install (its hash is stamped in the venv) or an import fails.
EVAL_REQS := $(ROOT)/clients/python/requirements-eval.txt
eval-deps: setup
	@stamp="$$(sha256sum "$(EVAL_REQS)" | cut -d' ' -f1)"; \
	if [ "$$(cat "$(STACK)/venv/.ragbench-eval" 2>/dev/null)" != "$$stamp" ] || \
	   ! $(PY) -c 'import matplotlib, llama_index.vector_stores.postgres' 2>/dev/null; then \
	  echo "[eval-deps] pip install --require-hashes --no-deps -r clients/python/requirements-eval.txt"; \
	  $(STACK)/venv/bin/pip install -q --require-hashes --no-deps -r "$(EVAL_REQS)" && \
	  echo "$$stamp" > "$(STACK)/venv/.ragbench-eval"; \
	fi

## The peer side by side: LlamaIndex's PGVectorStore (hybrid_search=True) and ragbench's hybrid retriever,
## both through LlamaIndex, on the same chunks, vectors and queries: nDCG@10, Recall@100, MRR@10, p50/p95
## latency, as Markdown.
eval-peer: start eval-deps
	@$(PY) scripts/eval_peer.py "$(URL)" "$(DATASET)"

## Benchmarks: search latency/throughput, then ingestion throughput (both print what they measured).
bench: bench-search bench-ingest bench-bm25 bench-embed

SIZES ?= 10000,100000
bench-search: start
	@$(PY) scripts/bench.py "$(URL)" --sizes $(SIZES)

## Ingestion through the queue and the background worker: stand-in embedding server and built-in model.
bench-ingest: start
	@$(PY) scripts/bench_ingest.py "$(URL)"

## BM25 under real loading patterns (one at a time, worker groups, one statement): segment counts, the
## worker's compaction, and short against 200-word queries with and without rag.bm25_max_query_terms.
bench-bm25: start
	@$(PY) scripts/bench_bm25.py "$(URL)" --dataset "$(DATASET)"

## Where the built-in model runs: rag.embedding_mode backend against service, side by side (memory of a
## new backend, its first search, query embedding p50/p95, hybrid throughput at 16 clients).
bench-embed: start
	@$(PY) scripts/bench_embed.py "$(URL)" --dataset "$(DATASET)"

## Mutation fuzzing of the parsers and the chunker on stable Rust (crates/core/examples/fuzz.rs):
## every target (pdf, docx, html, markdown, text, chunk) for FUZZ_SECONDS each; findings in target/fuzz/.
FUZZ_SECONDS ?= 60
FUZZ_TARGET ?= all
fuzz:
	@cargo run -q --release -p ragbench-core --example fuzz -- $(FUZZ_TARGET) $(FUZZ_SECONDS) tests/fixtures/formats

clean: stop
	rm -rf target .pgdata .pgdata.log
