# The operator's image for those who build with a registry at hand:
#   docker build -t vaultsync:dev .
# It holds the same binary as `cargo xtask image` (release, static musl, stripped), runs as the same
# user (65532, distroless' nonroot) and works with a read-only root file system. Without a registry,
# `cargo xtask image` writes the image as an archive offline (docs/development.md).
FROM rust:1.95-bookworm AS build
RUN rustup target add x86_64-unknown-linux-musl && apt-get update && apt-get install -y --no-install-recommends musl-tools
WORKDIR /src
COPY . .
RUN CC_x86_64_unknown_linux_musl=musl-gcc cargo build --release --locked --bin vaultsync --target x86_64-unknown-linux-musl \
 && strip target/x86_64-unknown-linux-musl/release/vaultsync

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /src/target/x86_64-unknown-linux-musl/release/vaultsync /vaultsync
USER 65532:65532
ENTRYPOINT ["/vaultsync"]
CMD ["run"]
