# hitsong: the demo pipeline and dashboard in one image; compose.yaml runs it as a team stack.
#
#   docker build -t hitsong .                                   # CPU torch (default)
#   docker build -t hitsong --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128 .
#   docker run -p 127.0.0.1:8501:8501 -p 127.0.0.1:5000:5000 hitsong   # = the README's main command
#
# The image runs as the unprivileged user `hitsong` (uid 10001), which owns /data. The demo's
# MLflow server has no authentication: publish its ports on the loopback only, as above; a
# team uses compose.yaml (auth, secrets, PostgreSQL). Not buildable on the development machines
# (no Docker engine there); kept consistent with the Makefile, which is what CI runs, and the
# commands and environment of compose.yaml are run outside Docker by tests/security/test_team_stack.py.
FROM python:3.11-slim

ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    HITSONG_HOME=/data \
    MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false

RUN apt-get update \
    && apt-get install -y --no-install-recommends ffmpeg \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --create-home --home-dir /home/hitsong hitsong \
    && mkdir -p /data \
    && chown hitsong:hitsong /data

WORKDIR /app
RUN pip install --index-url "${TORCH_INDEX}" "torch==${TORCH_VERSION}"
# tinysoundfont's metadata asks for pyaudio, which it does not need to render (see Makefile).
RUN pip install --no-deps "tinysoundfont>=0.3.7,<0.4"
COPY pyproject.toml README.md ./
COPY hitsong ./hitsong
COPY registry ./registry
# dashboard/.streamlit/config.toml (the server settings) is package data and comes along.
COPY dashboard ./dashboard
RUN pip install ".[postgres]"

USER hitsong
VOLUME ["/data"]
EXPOSE 8501 5000
# The default command serves both; compose.yaml gives each service its own check.
HEALTHCHECK --interval=30s --timeout=10s --start-period=20m --retries=3 \
    CMD ["python", "-c", "import urllib.request as u; [u.urlopen(x, timeout=4) for x in ('http://127.0.0.1:8501/_stcore/health', 'http://127.0.0.1:5000/health')]"]
# Same as `make demo`: demo data -> features -> training -> registry -> MLflow + dashboard.
CMD ["hitsong", "demo", "run", "--host", "0.0.0.0"]
