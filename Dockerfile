# syntax=docker/dockerfile:1
# Two images from one file (tests/test_dockerfile.py checks, without a Docker engine, that what this file copies
# exists and that its versions match constraints.txt):
#
#   docker build --target train -t marn-tf:train .
#   docker run --rm -v "$PWD/runs:/work/runs" marn-tf:train train --config ... --output runs/marn
#
#   marn export --run runs/marn --data runs/prep --output runs/demo/export        # on the host, or in `train`
#   docker build --target serve --build-arg EXPORT_DIR=runs/demo/export -t marn-tf:serve .
#   docker run --rm -p 8500:8500 -p 8501:8501 marn-tf:serve
#
# TF_VERSION and TF_SERVING_VERSION must equal the tensorflow and tensorflow-serving-api pins.
ARG TF_VERSION=2.21.0
ARG TF_SERVING_VERSION=2.21.0

# --- train: the marn command (pipeline, training, evaluation, export, batch scoring) ---------------------
FROM tensorflow/tensorflow:${TF_VERSION} AS train
WORKDIR /opt/marn-tf
COPY constraints.txt pyproject.toml setup.py ./
COPY marn_tf ./marn_tf
COPY pipelines ./pipelines
COPY export ./export
RUN python3 -m pip install --no-cache-dir -c constraints.txt . \
    && useradd --create-home --uid 1000 marn
USER marn
WORKDIR /work
ENTRYPOINT ["marn"]
CMD ["--help"]

# --- serve: TF Serving with the exported model(s) and models.config --------------------------------------
FROM tensorflow/serving:${TF_SERVING_VERSION} AS serve
# The `marn export --output` directory: <name>/<version>/ and models.config (base paths under /models).
ARG EXPORT_DIR=runs/demo/export
RUN useradd --create-home --uid 1000 tfserving
COPY --chown=tfserving ${EXPORT_DIR}/ /models/
USER tfserving
EXPOSE 8500 8501
# Healthy once every model in models.config is AVAILABLE (bash's /dev/tcp: the image has no curl).
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 CMD \
    bash -c 'for m in $(sed -n "s/.*name: \"\(.*\)\".*/\1/p" /models/models.config); do \
      exec 3<>/dev/tcp/127.0.0.1/8501 && printf "GET /v1/models/$m HTTP/1.0\r\n\r\n" >&3 \
      && grep -q AVAILABLE <&3 || exit 1; exec 3>&-; done'
ENTRYPOINT ["tensorflow_model_server", "--port=8500", "--rest_api_port=8501", \
            "--model_config_file=/models/models.config", "--enable_model_warmup=true"]
