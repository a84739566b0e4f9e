# Dream Arcade on a CUDA GPU server. The image serves: it holds the real games, the model and the
# server (docs/design.md §7), not the training code (tests/server/test_serving_without_training.py).
#   docker build -t dream-arcade .
#   docker run --gpus all -p 8000:8000 dream-arcade                      # play the shipped models
#   docker run --gpus all -v $PWD/training:/app/training -v $PWD/runs:/app/runs -v $PWD/data:/app/data \
#       dream-arcade python training/train.py --preset paper             # train: mount training/ in
# The same code picks CUDA automatically (bf16 autocast on the GPU). Not buildable on the 2-core
# CPU development machines (no Docker engine there); documented in README.md.
FROM nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04

ENV DEBIAN_FRONTEND=noninteractive PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
RUN apt-get update && apt-get install -y --no-install-recommends python3.11 python3.11-venv python3-pip \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY games games
COPY model model
COPY server server
COPY web web
COPY checkpoints checkpoints
COPY policies policies
RUN python3.11 -m venv /opt/venv && /opt/venv/bin/pip install --upgrade pip \
    && /opt/venv/bin/pip install "torch==2.13.0" --index-url https://download.pytorch.org/whl/cu124 \
    && /opt/venv/bin/pip install -e ".[dbc]"
ENV PATH=/opt/venv/bin:$PATH
EXPOSE 8000
CMD ["python", "-m", "server", "--host", "0.0.0.0", "--port", "8000", "--device", "cuda"]
