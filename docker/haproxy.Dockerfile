# HAProxy from Debian with vaed's configuration (docker/compose.yaml builds it).
FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends haproxy \
    && rm -rf /var/lib/apt/lists/*
COPY docker/haproxy.cfg /etc/haproxy/haproxy.cfg
EXPOSE 8080
CMD ["haproxy", "-f", "/etc/haproxy/haproxy.cfg", "-db"]
