# The stream-rec worker. Used by compose.yaml; the Docker-free path is `stream-rec kafka start` + `stream-rec worker`.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
# CPU-only torch first: the default Linux wheel pulls several GB of CUDA libraries the worker never uses.
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch
COPY pyproject.toml README.md ./
COPY stream_rec ./stream_rec
COPY topics ./topics
RUN pip install . \
    && useradd --create-home --uid 10001 app \
    && mkdir /data && chown app:app /data
USER app
ENV STREAM_REC_HOME=/data
VOLUME /data
EXPOSE 6066
CMD ["stream-rec", "worker"]
