# tillsync: a small two-stage image.
#
# The build needs no database: query macros check against the committed
# .sqlx/ metadata (SQLX_OFFLINE=true is set in .cargo/config.toml), and the
# migrations are compiled into the binary, which applies them at start.

FROM rust:1-bookworm AS builder
WORKDIR /build

# Dependencies first, against stub sources, so that a change to src/ does
# not rebuild every crate (works with or without BuildKit). The manifest
# names bench targets; cargo refuses a manifest whose target files are
# missing, so stubs stand in for them (the image never builds benches).
COPY Cargo.toml Cargo.lock ./
COPY .cargo ./.cargo
RUN mkdir src benches \
 && echo 'fn main() {}' > src/main.rs \
 && echo 'fn main() {}' > benches/ingest.rs \
 && echo 'fn main() {}' > benches/reports.rs \
 && echo 'fn main() {}' > benches/recovery.rs \
 && touch src/lib.rs \
 && cargo build --release --locked \
 && rm -rf src

COPY .sqlx ./.sqlx
COPY migrations ./migrations
COPY src ./src
# COPY keeps the files' own mtimes, which may be older than the stub build:
# touch them so cargo rebuilds the crate itself.
RUN touch src/main.rs src/lib.rs \
 && cargo build --release --locked


FROM debian:bookworm-slim
# ca-certificates for TLS to a managed Postgres; curl for the healthcheck in
# docker-compose.yml (the binary has no probe subcommand).
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --user-group --uid 10001 --no-create-home \
      --shell /usr/sbin/nologin tillsync
COPY --from=builder /build/target/release/tillsync /usr/local/bin/tillsync
USER tillsync
# Listen on every interface inside the container (the default is loopback).
ENV TILLSYNC_LISTEN=0.0.0.0:8080
EXPOSE 8080
# Exec form: tillsync is PID 1 and gets SIGTERM for a graceful shutdown.
ENTRYPOINT ["tillsync"]
CMD ["serve"]
