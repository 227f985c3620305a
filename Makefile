# Two entry points for a fresh machine: `make demo` and `make test`. Each creates .venv when missing.
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip install --quiet --disable-pip-version-check

.PHONY: demo test clean

$(PY):
	python3 -m venv $(VENV)

$(VENV)/.installed-run: pyproject.toml setup.py | $(PY)
	$(PIP) -e ".[cpu]"
	touch $@

$(VENV)/.installed-test: pyproject.toml setup.py | $(PY)
	$(PIP) -e ".[cpu,test,train,napari]"
	touch $@ $(VENV)/.installed-run

demo: $(VENV)/.installed-run
	$(VENV)/bin/copilot demo --frames 40

test: $(VENV)/.installed-test
	$(PY) -m pytest -q
	.ci/wheel-check $(PY)

clean:
	rm -rf $(VENV) .cache demo-data .pytest_cache
