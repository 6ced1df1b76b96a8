# syntax=docker/dockerfile:1
# mediapulse runtime image: Python 3.11, a headless Java 17 runtime, and the app (its record validator
# compiled in the builder stage) with its dependencies in a virtualenv, every one pinned by
# constraints.txt and downloaded from the public index. No secrets are baked in: credentials come from
# the environment at run time.
#
# Local use (the default command drains config/local.yaml's inputs under /app/data, then exits):
#   docker build -t mediapulse .
#   docker run --rm -v "$PWD/data:/app/data" mediapulse simulate --out data/incoming
#   docker run --rm -v "$PWD/data:/app/data" mediapulse
#   docker run --rm -v "$PWD/data:/app/data" mediapulse top
# The image reads and writes local paths (a mounted volume) and reaches PostgreSQL or Redshift over the
# network. It has no s3:// file system (pip's PySpark ships without hadoop-aws), so config/emr.yaml runs
# on Amazon EMR (docs/deploy-emr.md), not in this image.
#
# As a base for EMR on EKS or EMR Serverless custom images: those images must start FROM the EMR
# release's own base image (Spark, Java and the EMR integrations come from it; see "Customizing an EMR
# Serverless image" / "How to customize Docker images" for the URI of emr-spark-8.0.0), switch to
# `USER root`, copy /dist/*.whl from this file's builder stage (`docker build --target builder`) and the
# constraints.txt of `mediapulse emr package --no-upload` (the runtime closure without pyspark and py4j),
# `pip install -r constraints.txt` then `pip install --no-deps` the wheel into the image's Python, and
# end with `USER hadoop:hadoop`. Do not install pyspark there: the base image's Spark provides it. Submit
# the job with the wheel's record validator on the classpath:
# `--jars local://<site-packages>/streaming/java/mediapulse-validator.jar`.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
# The record validator (streaming/java) is compiled against PySpark's jars: a JDK in this stage only.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends openjdk-17-jdk-headless \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY constraints.txt ./
# hatchling's and pyspark's versions come from constraints.txt, like every other package's.
# hadolint ignore=DL3013
RUN python -m pip install --constraint constraints.txt hatchling \
    && python -m venv /opt/venv \
    && /opt/venv/bin/pip install --constraint constraints.txt pyspark
COPY pyproject.toml README.md ./
COPY config ./config
COPY streaming ./streaming
COPY sinks ./sinks
COPY bootstrap ./bootstrap
COPY devtools ./devtools
RUN /opt/venv/bin/python -m streaming.validator_jar \
    && python -m pip wheel --no-deps --no-build-isolation . -w /dist \
    && /opt/venv/bin/pip install --constraint constraints.txt /dist/mediapulse-*.whl \
    && /opt/venv/bin/pip freeze > /opt/venv/requirements.lock

FROM ${PYTHON_IMAGE}
# Debian's JRE follows the base image's security updates; rebuild to pick them up.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends openjdk-17-jre-headless procps \
    && rm -rf /var/lib/apt/lists/*
RUN useradd --uid 10001 --user-group --create-home --home-dir /home/mediapulse mediapulse \
    && mkdir -p /app/data \
    && chown -R mediapulse:mediapulse /app
COPY --from=builder /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYSPARK_PYTHON=/opt/venv/bin/python \
    PYSPARK_DRIVER_PYTHON=/opt/venv/bin/python \
    PYTHONUNBUFFERED=1
WORKDIR /app
USER 10001:10001
ENTRYPOINT ["mediapulse"]
CMD ["run", "--available-now"]
