PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# Every Python that make starts writes the bytecode of what it imports, under the
# virtualenv, even where the environment says not to (PYTHONDONTWRITEBYTECODE): without it
# each process compiles TensorFlow's Python source again, 12 of the 20 CPU seconds that
# `import tensorflow` takes, and the suite starts a dozen processes.
export PYTHONDONTWRITEBYTECODE :=
export PYTHONPYCACHEPREFIX := $(CURDIR)/$(VENV)/bytecode
FASHION_DIR := /usr/share/datasets/fashion-mnist

.PHONY: demo test test-integration test-fast setup data benchmark clean docs package package-check mutation

setup: $(STAMP) data

# Packages go in with uv (itself from PyPI), which installs from its cache in seconds where
# pip takes about a minute; with pip wherever uv cannot be installed. The virtualenv is made
# without pip (ensurepip alone takes seconds) and uv is put into it by the interpreter's own
# pip; uv then installs pip with the packages. `$(call install,EXTRA)` installs tfssl in
# editable mode with that extra.
install = if [ -x $(VENV)/bin/uv ]; then \
		$(VENV)/bin/uv pip install --quiet --python $(PY) -e '.[$(1)]' pip; \
	else $(PY) -m pip --version >/dev/null 2>&1 || $(PY) -m ensurepip --upgrade >/dev/null; \
		$(PY) -m pip install --quiet -e '.[$(1)]'; fi

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv --without-pip $(VENV)
	test -x $(VENV)/bin/uv || $(PYTHON) -m pip install --quiet --prefix $(VENV) uv \
		|| echo "uv could not be installed: pip installs instead"
	$(call install,test)
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
# `test` runs the library's suite, the longest files first (tests/conftest.py);
# `test-integration` the programs and clusters around it (the scripts, the benchmark, the
# worker pairs; tests/conftest.py says which), which CI runs too; `test-fast` leaves out the
# tests marked `slow` (setup.cfg), in `test`'s order.
PYTEST := $(PY) -m pytest -q -n 2 --dist loadfile

test: setup
	$(PYTEST) --no-loadscope-reorder -m "not integration" tests

test-integration: setup
	$(PYTEST) --no-loadscope-reorder -m integration tests

test-fast: setup
	$(PYTEST) --no-loadscope-reorder -m "not slow" tests

# The mutation check (docs/testing.md): before a release and after changing a method, not in
# `make test`. Each mutant of the functions below runs the fast tests that reach it; the
# configuration is setup.cfg's [mutmut]. `mutmut results` / `mutmut show NAME` read the outcome.
MUTANTS := 'tfssl.losses.*' 'tfssl.schedules.*' \
	'tfssl.models.*compute_losses*' 'tfssl.models.*update_state_after_step*' \
	'tfssl.models.*unsupervised_weight*' 'tfssl.models.*combine_losses*' \
	'tfssl.models.*current_ema_decay*' 'tfssl.models._supervised.*' \
	'tfssl.models.pseudo_label.x_pseudo_label_*' 'tfssl.models.*draw_mixing*' \
	'tfssl.models.*guess_labels*' 'tfssl.models.*mixed_logits*' 'tfssl.models.*mutual_terms*' \
	'tfssl.models.*virtual_adversarial_direction*' 'tfssl.models.adversarial.x__perturbation*' \
	'tfssl.models.adversarial.x__project*' 'tfssl.models.adversarial.x_normalize*' \
	'tfssl.models.policies.*' 'tfssl.models.*labeled_loss*' 'tfssl.models.*strong_view_loss*' \
	'tfssl.models.*fairness_loss*' 'tfssl.models.*sum_normalize*' 'tfssl.models.*mean_prediction*' \
	'tfssl.models.*updated_targets*' 'tfssl.models.*remember_rate*' 'tfssl.models.*select_small_loss*' \
	'tfssl.models.*division_losses*' 'tfssl.models.*warmup_losses*' 'tfssl.models.*mixmatch_losses*' \
	'tfssl.models.*prior_penalty*' 'tfssl.models.*gmm_clean_probability*' 'tfssl.models.*_m_step*' \
	'tfssl.models.*_e_step*' 'tfssl.models.*scatter_sample_state*' 'tfssl.models.*gather_sample_state*'

# mutmut wraps each mutated function in a `(*args, **kwargs)` trampoline; Keras reads a
# layer's `__init__` signature when it creates one, so constructors are left unmutated.
mutation: setup
	$(PY) -c 'import mutmut.__main__ as m, mutmut.mutation.file_mutation as f; \
		f.NEVER_MUTATE_FUNCTION_NAMES.add("__init__"); m.cli()' \
		run --max-children 2 $(MUTANTS)

benchmark: setup
	$(PY) estimators/benchmark.py

# The documentation site, from docs/ and the docstrings, into site/ (git-ignored). --strict:
# a broken link or reference, or a docstring that does not parse, fails the build.
DOCS_STAMP := $(VENV)/.installed-docs
$(DOCS_STAMP): $(STAMP)
	$(call install,docs)
	touch $(DOCS_STAMP)

docs: $(DOCS_STAMP)
	$(PY) -m mkdocs build --strict --site-dir site

# The sdist and the wheel in dist/, checked by twine (metadata and the README's rendering).
PACKAGE_STAMP := $(VENV)/.installed-package
$(PACKAGE_STAMP): $(STAMP)
	$(call install,package)
	touch $(PACKAGE_STAMP)

package: $(PACKAGE_STAMP)
	rm -rf dist
	$(PY) -m build --outdir dist .
	$(PY) -m twine check --strict dist/*

# The wheel installed in a fresh virtualenv outside the repository runs the README's quick
# start (tests/test_packaging.py; it builds its own wheel).
package-check: $(PACKAGE_STAMP) data
	TFSSL_PACKAGE_CHECK=1 $(PY) -m pytest -q -p no:cacheprovider tests/test_packaging.py

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache site dist build
