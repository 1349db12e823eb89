# gammabeta: two commands on a fresh machine, `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: clean-jit demo test lint bench fuzz soak install clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	# torch==2.13.0 (a test/benchmark reference only) resolves to this machine's local CPU wheel
	$(PY) -m pip install -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/gammabeta demo

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check .

bench: $(STAMP)
	env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $(PY) benchmarks/run.py
	$(PY) benchmarks/distributed.py

fuzz: $(STAMP)
	# coverage-guided fuzzing of every untrusted-file loader; new inputs grow fuzz/corpus
	$(PY) fuzz/fuzz_loaders.py -max_total_time=$${FUZZ_SECONDS:-600} -timeout=10 \
		-rss_limit_mb=2048 fuzz/corpus

soak: $(STAMP)
	$(PY) benchmarks/soak.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
	$(MAKE) clean-jit

# numba's on-disk cache checks only each function's own file: after editing a kernel module,
# functions in other files that call it keep the old compiled code until this is run
clean-jit:
	find src -path '*__pycache__*' \( -name '*.nbi' -o -name '*.nbc' \) -delete
