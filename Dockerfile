# Build stage: compile the release binary.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY .cargo .cargo
COPY src src
COPY migrations migrations
COPY templates templates
COPY assets assets
COPY openapi openapi
RUN cargo build --release --locked && strip target/release/registrar

# Runtime stage: the binary alone (migrations, mail templates and Swagger UI are embedded in it).
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 registrar
COPY --from=build /src/target/release/registrar /usr/local/bin/registrar
USER registrar
ENV REGISTRAR_BIND=0.0.0.0:8080 \
    REGISTRAR_ENV=production
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD curl -fsS http://127.0.0.1:8080/readyz || exit 1
ENTRYPOINT ["registrar"]
CMD ["serve"]
