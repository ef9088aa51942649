# mugaika: multi-stage build. The builder compiles a release binary; the runtime image holds
# only that binary, CA certificates, the Japanese fonts that pdf = "rasterize" draws with, and a
# non-root user.
#   docker build -t mugaika .
#   docker run -d -p 2525:2525 -v mugaika-spool:/var/spool/mugaika \
#     -v /etc/mugaika:/etc/mugaika:ro mugaika
FROM rust:1.95-bookworm AS build
WORKDIR /src
# Dependencies first, so that a source change does not rebuild them.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && cargo build --release --locked || true
COPY . .
RUN touch src/main.rs src/lib.rs && cargo build --release --locked --bin mugaika \
    && strip target/release/mugaika

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
      fonts-ipafont-gothic fonts-ipafont-mincho \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system mugaika \
    && useradd --system --gid mugaika --home-dir /var/spool/mugaika --shell /usr/sbin/nologin mugaika \
    && mkdir -p /var/spool/mugaika /var/lib/mugaika/quarantine /etc/mugaika \
    && chown mugaika:mugaika /var/spool/mugaika /var/lib/mugaika /var/lib/mugaika/quarantine
COPY --from=build /src/target/release/mugaika /usr/local/bin/mugaika
COPY dist/docker.toml /etc/mugaika/mugaika.toml
# See dist/mugaika.service: fewer glibc arenas, a much lower peak RSS under concurrent load.
ENV MALLOC_ARENA_MAX=2
USER mugaika
VOLUME ["/var/spool/mugaika", "/var/lib/mugaika/quarantine"]
# 2525: SMTP. 8025: the admin listener (health, metrics, quarantine API and page); publish it
# only to a management network, e.g. -p 127.0.0.1:8025:8025.
EXPOSE 2525 8025
# Healthy when /readyz answers 200: the SMTP listeners are bound and the spool is open, and the
# server is not draining (the healthcheck runs inside the container, over loopback).
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8025 && printf 'GET /readyz HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' >&3 && head -n 1 <&3 | grep -q ' 200 '"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/mugaika"]
CMD ["serve", "--config", "/etc/mugaika/mugaika.toml"]
