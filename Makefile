# The two commands: `make run` (default study end to end) and `make test` (the test suite).
# Both create .venv when missing and install the project into it with plain pip.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint install clean browser java

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# constraints.txt: the exact default set (pyproject.toml only gives the supported ranges).
$(STAMP): $(BIN)/python pyproject.toml constraints.txt
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev,stacks,ray]'
	touch $(STAMP)

install: $(STAMP)

# The study detects this machine's CPU family and vCPUs and prices it as the cheapest catalogue entry
# that matches (an AMD EPYC Milan with 2 vCPUs: EC2 c6a.large); when none matches it stops before
# measuring and asks for one. To choose: make run RUN_ARGS='--instance NAME' (see `deploybench prices`)
# or RUN_ARGS='--price-per-hour X'.
RUN_ARGS ?=

run: $(STAMP)
	$(BIN)/deploybench run $(RUN_ARGS)

# The report's browser test needs Debian's Chromium; install it where we may (root, as in CI).
# Both the browser and its driver: a Chromium without chromedriver would skip the test.
browser:
	@{ command -v chromium && command -v chromedriver; } >/dev/null 2>&1 || [ "$$(id -u)" != 0 ] || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) || \
		echo "warning: chromium not installed; the browser test skips (and fails under CI)"

# TorchServe (a serving stack to compare with) needs a Java 17 runtime; install it where we may.
java:
	@java -version 2>&1 | grep -q 'version "\(1[7-9]\|[2-9][0-9]\)' || [ "$$(id -u)" != 0 ] || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless >/dev/null) || \
		echo "warning: no Java 17; the torchserve stack reports itself unavailable and its tests skip"

test: $(STAMP) browser java lint
	$(BIN)/python -m pytest

# ruff (style, complexity) and import-linter (the package's floors, pyproject [tool.importlinter]).
lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/lint-imports --no-cache

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
