# Lethe container image: a static-enough release binary on a distroless base.
#
#   docker build -t lethe:0.1.0 .
#   docker run --rm -e LETHE_AUDIT_KEY=... lethe:0.1.0 plan
#
# The binary is built exactly as the tests build it: same Cargo.lock
# (--locked), default features, the `lethe` bin target.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-slim-bookworm AS build
WORKDIR /src
# Dependencies first, in their own layer: rebuilt only when the manifest or
# lock file changes, not on every source edit.
COPY Cargo.toml Cargo.lock ./
COPY benches ./benches
RUN mkdir -p src \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs \
 && cargo build --release --locked --bin lethe \
 && rm -rf src
COPY src ./src
COPY migrations ./migrations
RUN touch src/main.rs src/lib.rs \
 && cargo build --release --locked --bin lethe \
 && strip target/release/lethe

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/lethe /usr/local/bin/lethe
COPY config /etc/lethe/config
COPY jobs /etc/lethe/jobs
ENV LETHE_CONFIG=/etc/lethe/config/lethe.toml \
    LETHE_JOBS=/etc/lethe/jobs
# Relative paths in the config (var/audit, var/state.db) land here.
WORKDIR /var/lib/lethe
USER 65532:65532
# Docker's health probe is the daemon's (`lethe daemon`, the scheduler for
# hosts without Kubernetes): `lethe healthcheck` asks its health address and
# fails when the loop stalled or is gone. Kubernetes ignores HEALTHCHECK, and
# a one-shot `lethe run` serves no probe: start those with --no-healthcheck.
HEALTHCHECK --interval=60s --timeout=10s --start-period=30s --retries=3 \
  CMD ["/usr/local/bin/lethe", "healthcheck", "--quiet"]
# Exec form: lethe is PID 1 and receives SIGTERM itself (it installs a handler,
# finishes the current batch and exits).
ENTRYPOINT ["/usr/local/bin/lethe"]
CMD ["run"]
