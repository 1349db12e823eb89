# gammabeta: two commands on a fresh machine, `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test

# warm: compile the Numba kernels for this machine and generate MNIST-1D into the data cache
# now (install runs it; 1-2 minutes once), not in the first training run
.PHONY: warm clean-jit demo test lint bench fuzz soak install clean docs docs-check figures

# .venv/.installed: what running needs (make demo); .venv/.installed-test adds the test,
# docs and benchmark references (torch, onnx, dask, mpi, mkdocs) for make test
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e .
	$(MAKE) warm
	touch $(STAMP)

$(TEST_STAMP): $(STAMP) pyproject.toml
	# torch==2.13.0 (a test/benchmark reference only) resolves to this machine's local CPU wheel
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(TEST_STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/gammabeta demo

test: $(TEST_STAMP)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest

lint: $(TEST_STAMP)
	$(VENV)/bin/ruff check .

docs: $(TEST_STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site

docs-check: docs
	$(PY) tools/docs_check.py site

figures: $(STAMP)
	$(PY) tools/figures.py $(if $(MNIST_DIR),--mnist-dir $(MNIST_DIR))

bench: $(TEST_STAMP)
	env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $(PY) benchmarks/run.py
	$(PY) benchmarks/distributed.py
	env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $(PY) benchmarks/profile_step.py

fuzz: $(TEST_STAMP)
	# coverage-guided fuzzing of every untrusted-file loader; new inputs grow fuzz/corpus
	$(PY) fuzz/fuzz_loaders.py -max_total_time=$${FUZZ_SECONDS:-600} -timeout=10 \
		-rss_limit_mb=2048 fuzz/corpus

soak: $(TEST_STAMP)
	$(PY) benchmarks/soak.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache site site-screenshots
	$(MAKE) clean-jit

# numba's on-disk cache checks only each function's own file: after editing a kernel module,
# functions in other files that call it keep the old compiled code until this is run
clean-jit:
	find src -path '*__pycache__*' \( -name '*.nbi' -o -name '*.nbc' \) -delete

warm:
	@$(PY) -m compileall -q src
	@$(PY) -c "from gammabeta.backend import warm_kernels as w; \
	print('compiling the kernels for this machine (once per install)', flush=True); \
	print(f'kernels ready in {w():.0f} s')"
	@$(PY) -c "from gammabeta.data.registry import load_dataset as l; l('mnist1d')" \
	&& echo "MNIST-1D generated into the data cache"
