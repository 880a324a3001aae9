# syntax=docker/dockerfile:1
#
# tickwheel in one container:   docker build -t tickwheel .
#                 or with podman: podman build --format docker -t tickwheel .
# (--format docker keeps the HEALTHCHECK, which the OCI image format has no field for.)
# See README.md, "Run in a container", for running it and for production settings.

# The toolchain the build was checked with; any 1.85+ (the crate's rust-version) works.
ARG RUST_VERSION=1.95

# ---------------------------------------------------------------------------------------
# Build stage
# ---------------------------------------------------------------------------------------
# Base images are named in full: podman and buildah refuse a short name such as
# "rust:1.95-bookworm" that no alias or search registry resolves (Debian's configuration has
# none for rust); Docker reads both forms the same.
FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src

# Dependencies first, in a layer of their own: the manifests and the lock file with stub
# sources, so this (slow) layer is rebuilt only when Cargo.toml or Cargo.lock change.
COPY Cargo.toml Cargo.lock ./
COPY entities/Cargo.toml entities/
COPY migration/Cargo.toml migration/
# The benchmark crate is a workspace member: its manifest is needed, its code is not.
COPY bench/Cargo.toml bench/
RUN mkdir -p src entities/src migration/src bench/src/bin \
 && echo 'fn main() {}' > src/main.rs \
 && echo 'fn main() {}' > bench/src/main.rs \
 && echo 'fn main() {}' > bench/src/bin/peer.rs \
 && echo 'fn main() {}' > bench/src/bin/clients.rs \
 && touch src/lib.rs entities/src/lib.rs migration/src/lib.rs \
 && cargo build --release --locked -p tickwheel --bin tickwheel

# Then the real sources. They are touched so that they are newer than the stub build
# whatever times COPY gave them, and cargo rebuilds the three workspace crates.
# The release profile keeps line tables for panic backtraces; compressing the debug
# sections shrinks the binary from about 145 MB to about 60 MB and backtraces still work.
COPY src src
# The console's HTML templates, compiled into the binary.
COPY templates templates
COPY entities/src entities/src
COPY migration/src migration/src
RUN touch src/main.rs src/lib.rs entities/src/lib.rs migration/src/lib.rs \
 && cargo build --release --locked -p tickwheel --bin tickwheel \
 && mkdir -p /out \
 && objcopy --compress-debug-sections=zlib target/release/tickwheel /out/tickwheel

# ---------------------------------------------------------------------------------------
# Runtime stage
# ---------------------------------------------------------------------------------------
FROM docker.io/library/debian:bookworm-slim

# ca-certificates is left unpinned on purpose: it should follow Debian's security updates.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 tickwheel \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /data \
      --shell /usr/sbin/nologin tickwheel \
 && install -d -o 10001 -g 10001 -m 0750 /data

COPY --from=build /out/tickwheel /usr/local/bin/tickwheel

# No config.toml in the image: built-in defaults plus these variables (any other key can be
# set the same way, TICKWHEEL__SECTION__KEY). The SQLite database and the header encryption
# key live in /data; mount a volume there.
ENV TICKWHEEL__SERVER__BIND=0.0.0.0:8080 \
    TICKWHEEL__DATABASE__URL="sqlite:///data/tickwheel.db?mode=rwc" \
    TICKWHEEL__CRYPTO__KEY_FILE=/data/master.key \
    TICKWHEEL__LOG__FORMAT=json

USER 10001:10001
WORKDIR /data
VOLUME /data
EXPOSE 8080

# `tickwheel healthcheck` GETs /healthz on the port of TICKWHEEL__SERVER__BIND.
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
    CMD ["tickwheel", "healthcheck"]

ENTRYPOINT ["tickwheel"]
CMD ["serve"]
