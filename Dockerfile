# otel-chatbot processor image: `otel-chatbot serve` (and the other commands) on python:3.11-slim.
# Build: docker build -t otel-chatbot .   Run: docker compose up (see docker-compose.yml).

# --- build: a wheel of the project and of every server dependency --------------------------------
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY otel_chatbot ./otel_chatbot
RUN pip wheel --no-cache-dir --wheel-dir /wheels '.[server]'

# --- runtime: no compiler, no sources, a non-root user ---------------------------------------------
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    OTEL_CHATBOT_DATA_DIR=/var/lib/otel-chatbot
RUN groupadd --system --gid 10001 otelchatbot \
 && useradd --system --uid 10001 --gid otelchatbot --home-dir /var/lib/otel-chatbot --create-home \
            --shell /usr/sbin/nologin otelchatbot
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels 'otel-chatbot[server]' && rm -rf /wheels

USER otelchatbot:otelchatbot
WORKDIR /var/lib/otel-chatbot
# Inside a container the processor must listen on every interface; a flag or OTEL_CHATBOT_* variable
# still overrides these.
ENV OTEL_CHATBOT_OTLP_GRPC=0.0.0.0:4317 \
    OTEL_CHATBOT_OTLP_HTTP=0.0.0.0:4318 \
    OTEL_CHATBOT_METRICS=0.0.0.0:9464
# OTLP/gRPC, OTLP/HTTP + feedback API + review UI, Prometheus /metrics
EXPOSE 4317 4318 9464

# Ready = the database answers and the pipeline takes data (GET /readyz → 200, else 503).
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; port = os.environ['OTEL_CHATBOT_OTLP_HTTP'].rpartition(':')[2]; urllib.request.urlopen(f'http://127.0.0.1:{port}/readyz', timeout=4)"]

ENTRYPOINT ["otel-chatbot"]
CMD ["serve"]
