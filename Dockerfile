# ragbench on the ParadeDB image: PostgreSQL 17 + pg_search 0.21.14 (the version the tests run) +
# pgvector, with pgmq and this extension added, preloaded, and created at init.
#
# The build runs the same installer as `make setup` and CI (scripts/setup.sh with RAGBENCH_PG_CONFIG
# pointing at the image's server; it calls docker/install-extras.sh for pgmq and the model): one path.
ARG PARADEDB_IMAGE=paradedb/paradedb:0.21.14-pg17

FROM ${PARADEDB_IMAGE} AS build
USER root
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl git postgresql-server-dev-17 \
 && rm -rf /var/lib/apt/lists/*
# rustc 1.95: the toolchain pgrx 0.18.1 and candle 0.11 are tested with.
RUN curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --default-toolchain 1.95.0
ENV PATH=/root/.cargo/bin:$PATH
WORKDIR /src
COPY . .
# 1: also install the quality option all-mpnet-base-v2 (+440 MB).
ARG RAGBENCH_MPNET=0
RUN RAGBENCH_MPNET=${RAGBENCH_MPNET} RAGBENCH_PG_CONFIG=/usr/lib/postgresql/17/bin/pg_config STACK=/src/.stack bash scripts/setup.sh \
 && PGRX_HOME=/src/.stack/pgrx cargo pgrx install --release --pg-config /usr/lib/postgresql/17/bin/pg_config

FROM ${PARADEDB_IMAGE}
USER root
COPY --from=build /usr/share/postgresql/17/extension/ /usr/share/postgresql/17/extension/
COPY --from=build /usr/share/postgresql/17/ragbench/ /usr/share/postgresql/17/ragbench/
COPY --from=build /usr/lib/postgresql/17/lib/ragbench.so /usr/lib/postgresql/17/lib/ragbench.so
COPY docker/initdb/ /docker-entrypoint-initdb.d/
USER postgres
CMD ["postgres", "-c", "shared_preload_libraries=ragbench,pg_search"]
