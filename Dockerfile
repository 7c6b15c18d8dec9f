# tillsync: a small two-stage image.
#
# The build needs no database: query macros check against the committed
# .sqlx/ metadata (SQLX_OFFLINE=true is set in .cargo/config.toml), and the
# migrations are compiled into the binary, which applies them at start.

FROM rust:1-bookworm AS builder
WORKDIR /build

# One build from the real sources, no dependency-only layer: the manifest is
# a workspace, and cargo reads every member's manifest and target files
# (crates/*: the simulator the binary links, the test kit, the benchmarks)
# before it builds anything, so a dependency layer would need invented stub
# sources for each of them, which drift from the real ones. Only the
# server's binary is built; .dockerignore keeps target/ out of the context.
COPY Cargo.toml Cargo.lock ./
COPY .cargo ./.cargo
COPY .sqlx ./.sqlx
COPY migrations ./migrations
COPY src ./src
COPY crates ./crates
RUN cargo build --release --locked --bin tillsync


FROM debian:bookworm-slim
# libssl3: TLS to Postgres is OpenSSL's (docs/configuration.md, TLS to
# Postgres); ca-certificates for TLS to a managed Postgres; curl for the
# healthcheck in docker-compose.yml (the binary has no probe subcommand).
RUN apt-get update \
 && apt-get install -y --no-install-recommends libssl3 ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --user-group --uid 10001 --no-create-home \
      --shell /usr/sbin/nologin tillsync
COPY --from=builder /build/target/release/tillsync /usr/local/bin/tillsync
USER tillsync
# OpenSSL would parse the CA bundle file for every new TLS connection to
# Postgres, tens of milliseconds of CPU each (docs/configuration.md, TLS to
# Postgres); the system's CAs stay trusted through /etc/ssl/certs, where
# ca-certificates links them by hash. Set it to a bundle of your own to
# trust only that.
ENV SSL_CERT_FILE=/dev/null
# Listen on every interface inside the container (the default is loopback).
ENV TILLSYNC_LISTEN=0.0.0.0:8080
EXPOSE 8080
# Exec form: tillsync is PID 1 and gets SIGTERM for a graceful shutdown.
ENTRYPOINT ["tillsync"]
CMD ["serve"]
