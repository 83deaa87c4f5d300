# syntax=docker/dockerfile:1
#
# Image of the crm-username Slack bot: `docker build -t crm-username .`
# Runs `crm-username serve` on port 3000 (BIND_ADDR) as UID 10001. Configuration and secrets come
# from the environment at run time (docs/reference.md, "Environment"); nothing secret is baked in.
#
# Stages: chef (toolchain + cargo-chef) -> planner (dependency recipe) -> builder (dependencies
# cached in their own layer, then the crate) -> runtime (distroless: glibc, libgcc, CA
# certificates, no shell, no package manager).

# Same toolchain as CI.
FROM rust:1.95-bookworm AS chef
RUN cargo install cargo-chef --locked --version 0.1.78
WORKDIR /app

# The recipe only changes when Cargo.toml or Cargo.lock do, so the dependency layer below is
# reused across source-only changes.
FROM chef AS planner
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /app/recipe.json recipe.json
# Without the `demo` feature (the default build has it): the fakes of Salesforce, Account
# Engagement and Slack, the synthetic org and the playground page are test servers, and stay out
# of the image. `check --demo` and `serve --demo` still answer from the built-in demo org.
RUN cargo chef cook --release --locked --no-default-features --bin crm-username --recipe-path recipe.json
COPY Cargo.toml Cargo.lock ./
COPY src ./src
# Cargo.toml declares the bench target, so its file must exist for the manifest to load.
COPY benches ./benches
RUN cargo build --release --locked --no-default-features --bin crm-username

# distroless/cc: what a Rust binary linked against glibc needs, plus CA certificates for the
# TLS calls to Salesforce, Account Engagement and Slack (rustls reads the system store).
# Debian 12 like the builder, so the glibc versions match.
FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
COPY --from=builder /app/target/release/crm-username /usr/local/bin/crm-username
# Numeric, so Kubernetes can verify runAsNonRoot; matches runAsUser in manifests/k8s.
USER 10001:10001
EXPOSE 3000
# What `docker stop` and Kubernetes send; serve is to finish in-flight requests and exit on it
# within terminationGracePeriodSeconds (30 s in manifests/k8s).
STOPSIGNAL SIGTERM
# No HEALTHCHECK: the image has no shell or HTTP client; orchestrators probe GET /healthz and
# GET /readyz on port 3000 instead (see manifests/k8s/deployment.yaml).
ENTRYPOINT ["crm-username"]
CMD ["serve"]
