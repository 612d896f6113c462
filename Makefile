# Kintsmesh: the two commands are `make demo` and `make test`.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
KM      := $(BIN)/kintsmesh
STAMP   := $(VENV)/.installed
DEMO_PEOPLE ?= 5000
DEMO_RATE   ?= 200
DEMO_SECONDS ?= 60

.PHONY: setup demo test unit integration typecheck up down status bench-capture reset clean audit lock

# Every Python package from the lock, each checked against its hash; then this project itself, without
# fetching anything more (its build backend is in the lock too).
$(STAMP): pyproject.toml requirements.lock
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --require-hashes -r requirements.lock
	$(BIN)/pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

setup: $(STAMP)

up: setup
	$(KM) stack up
	$(KM) connect apply --wait 180

down:
	-$(KM) stack down

status:
	$(KM) stack status
	$(KM) connect status
	$(KM) status

# Start everything, load a city, run live department activity and show the change events per department.
# The city is in the department databases before their connectors start, as a department's history is
# when it joins: Debezium's initial snapshot reads it (its lag is reported apart from live sync lag).
demo: setup
	$(KM) stack up
	$(KM) simulate --initial $(DEMO_PEOPLE) --keep-existing
	$(KM) connect apply --wait 180
	$(BIN)/python -m kintsmesh.demo --rate $(DEMO_RATE) --duration $(DEMO_SECONDS)
	$(KM) status
	@echo "The stack is still up: Prometheus http://127.0.0.1:19090 (alerts: /alerts), Kafka 127.0.0.1:19092, Connect http://127.0.0.1:18083"
	@echo "Watch it: $(KM) status --watch"
	@echo "Stop it with: make down"

unit: setup
	$(BIN)/pytest tests/unit -q

typecheck: setup
	$(BIN)/mypy

integration: up
	$(BIN)/pytest tests/integration -q

# Known vulnerabilities in the locked packages (pip-audit); says so when no advisory database answers.
audit: setup
	$(BIN)/python -m kintsmesh.security.lock_audit

# Re-resolve requirements.lock from pyproject.toml (pip-tools in a throwaway venv), with hashes.
lock:
	$(PY) -m venv .lock-venv && .lock-venv/bin/pip install -q pip-tools
	.lock-venv/bin/pip-compile -q --generate-hashes --allow-unsafe --strip-extras --no-emit-find-links \
		--no-emit-index-url --extra test -o requirements.lock pyproject.toml
	rm -rf .lock-venv

# Set up everything, start the stack, run every test, stop the stack (also when a test fails).
test: setup
	$(BIN)/pytest tests/unit -q
	$(BIN)/mypy
	$(BIN)/python -m kintsmesh.security.lock_audit
	$(MAKE) up && $(BIN)/pytest tests/integration -q; status=$$?; $(KM) stack down; exit $$status

bench-capture: up
	$(KM) simulate --initial 2000 --keep-existing   # its live phase writes changes of the simulator's city
	$(KM) bench capture

reset:
	$(KM) stack reset

clean: down
	rm -rf .stack $(VENV)
