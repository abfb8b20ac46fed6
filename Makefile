PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
FASHION_DIR := /usr/share/datasets/fashion-mnist

.PHONY: demo test test-fast setup data benchmark clean

setup: $(STAMP) data

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# Fashion-MNIST from Debian where we can install it; elsewhere the loader falls back to
# Keras' download on first use.
data:
	@if [ -f $(FASHION_DIR)/train-images-idx3-ubyte.gz ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist >/dev/null; \
	else echo "dataset-fashion-mnist not installed: tfssl will download Fashion-MNIST with Keras"; fi

demo: setup
	$(PY) estimators/demo.py

# pytest exits 5 when it collected no test: that is a failure here too. Two pytest workers
# (pytest-xdist), one per core, each test file on one worker (its module fixtures run once).
# `test` runs everything; `test-fast` leaves out the tests marked `slow` (setup.cfg).
test: setup
	$(PY) -m pytest -q -n 2 --dist loadfile tests

test-fast: setup
	$(PY) -m pytest -q -n 2 --dist loadfile -m "not slow" tests

benchmark: setup
	$(PY) estimators/benchmark.py

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
