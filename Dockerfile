# Minimal image for now; the deployment issue grows it (multi-stage, healthcheck, volume).
FROM python:3.11-slim
RUN useradd --create-home nareta
WORKDIR /app
COPY . /app
RUN bash scripts/setup.sh && chown -R nareta /app
USER nareta
ENTRYPOINT ["/app/.venv/bin/nareta"]
CMD ["--help"]
