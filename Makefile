# egom2p: the two set-up commands of the README are `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO_OUT ?= demo_out
QUALITY_OUT ?= quality_out

.PHONY: setup demo quality test test-fast bench gpu-bench prefect-up prefect-down clean

setup:
	@VENV=$(VENV) bash scripts/setup.sh

demo: setup
	$(VENV)/bin/egom2p demo --out $(DEMO_OUT)

quality: setup
	$(VENV)/bin/egom2p quality --out $(QUALITY_OUT)

test: setup
	$(PY) -m pytest -q

test-fast: setup
	$(PY) -m pytest -q -m "not slow"

bench: setup
	$(PY) benchmarks/run_all.py

gpu-bench: setup
	bash benchmarks/gpu/run_all.sh

prefect-up: setup
	bash scripts/prefect_local.sh start

prefect-down:
	bash scripts/prefect_local.sh stop

clean:
	rm -rf $(DEMO_OUT) $(QUALITY_OUT) .scratch
