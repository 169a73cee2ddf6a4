# A static vaultsync binary in a distroless image.
#   docker build -t vaultsync:dev .
FROM rust:1.95-bookworm AS build
RUN rustup target add x86_64-unknown-linux-musl && apt-get update && apt-get install -y --no-install-recommends musl-tools cmake
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin vaultsync --target x86_64-unknown-linux-musl

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /src/target/x86_64-unknown-linux-musl/release/vaultsync /vaultsync
USER 65532:65532
ENTRYPOINT ["/vaultsync"]
CMD ["run"]
