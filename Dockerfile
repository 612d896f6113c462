# The Kintsmesh image of docker-compose's Python services: the packages of requirements.lock, each checked
# against its hash, installed once at build time (nothing is installed when a container starts).
FROM python:3.11-slim
WORKDIR /app
COPY requirements.lock /app/requirements.lock
RUN pip install --no-cache-dir --require-hashes -r requirements.lock
COPY . /app
RUN pip install --no-cache-dir --no-deps --no-build-isolation -e .
ENV KINTSMESH_STACK_DIR=/stack
