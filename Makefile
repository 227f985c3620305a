# Two entry points for a fresh machine: `make demo` and `make test`. Each creates .venv when missing.
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip install --quiet --disable-pip-version-check

.PHONY: demo test clean xvfb

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

# The overlay soak test draws in a real X server: Xvfb and the X libraries Qt's xcb plugin loads (Debian/Ubuntu
# packages; installed only where one is missing).
XPKGS := xvfb libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-image0 libxcb-render-util0 libxcb-xinerama0 \
         libxkbcommon-x11-0 libxcb-shape0 libxcb-randr0 libxcb-xfixes0 libxcb-sync1 libxcb-xkb1 libegl1 \
         libfontconfig1 libdbus-1-3
xvfb:
	@dpkg -s $(XPKGS) >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; elif command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; \
	  else echo "missing X packages for the overlay soak test and no root/sudo: apt-get install $(XPKGS)" >&2; \
	  exit 1; fi; \
	  $$SUDO apt-get update -q >/dev/null && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q --no-install-recommends $(XPKGS) >/dev/null; }

test: $(VENV)/.installed-test xvfb
	$(PY) -m pytest -q
	.ci/wheel-check $(PY)

clean:
	rm -rf $(VENV) .cache demo-data .pytest_cache
