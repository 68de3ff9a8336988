# hitsong: the demo pipeline and dashboard in one image.
#
#   docker build -t hitsong .                                   # CPU torch (default)
#   docker build -t hitsong --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128 .
#   docker run -p 8501:8501 -p 5000:5000 hitsong                 # = the README's main command
#
# Not buildable on the development machines (no Docker engine there); kept consistent with the
# Makefile, which is what CI runs.
FROM python:3.11-slim

ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    HITSONG_HOME=/data \
    MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false

RUN apt-get update \
    && apt-get install -y --no-install-recommends ffmpeg \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
RUN pip install --index-url "${TORCH_INDEX}" "torch==${TORCH_VERSION}"
# tinysoundfont's metadata asks for pyaudio, which it does not need to render (see Makefile).
RUN pip install --no-deps "tinysoundfont>=0.3.7,<0.4"
COPY pyproject.toml README.md ./
COPY hitsong ./hitsong
COPY registry ./registry
COPY dashboard ./dashboard
RUN pip install ".[postgres]"

VOLUME ["/data"]
EXPOSE 8501 5000
# Same as `make demo`: demo data -> features -> training -> registry -> MLflow + dashboard.
CMD ["hitsong", "demo", "run", "--host", "0.0.0.0"]
