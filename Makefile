# Two entry points for a fresh machine: `make demo` and `make test`. Each creates .venv when missing.
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip install --quiet --disable-pip-version-check

.PHONY: demo test clean xvfb

$(PY):
	python3 -m venv $(VENV)

$(VENV)/.installed-run: pyproject.toml | $(PY)
	$(PIP) -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(PY)
	$(PIP) -e ".[test,train]"
	touch $@ $(VENV)/.installed-run

demo: $(VENV)/.installed-run
	$(VENV)/bin/copilot demo --frames 40

# The overlay soak test draws in a real X server (Xvfb); install it where missing (Debian/Ubuntu: package xvfb).
xvfb:
	@command -v Xvfb >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; elif command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; \
	  else echo "Xvfb is missing and there is no root/sudo to install it (apt-get install xvfb)" >&2; exit 1; fi; \
	  $$SUDO apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q xvfb >/dev/null; }

test: $(VENV)/.installed-test xvfb
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) .cache demo-data .pytest_cache
