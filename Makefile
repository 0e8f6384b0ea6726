VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test lint typecheck pytest demo demo-live bench bench-packages clean system-packages

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

typecheck: $(STAMP)
	$(VENV)/bin/mypy

# Two processes (pytest-xdist), a test module to each at a time: a module's fixtures (servers,
# subprocesses) start once, and the virtual-time scenarios use both cores. A test still running
# after 10 minutes (the slowest take a minute or two on a busy machine) fails with every
# thread's stack (pytest-timeout) rather than holding the run up.
pytest: $(STAMP)
	$(VENV)/bin/pytest -n 2 --dist loadfile --timeout 600

test: system-packages lint typecheck pytest

# The dashboard's browser tests need Debian's Chromium and its driver; the alert rules' tests need
# promtool (Debian's prometheus); the shared state store's tests start their own redis-server.
# Installed only when missing, and only where apt-get can run.
SYSTEM_COMMANDS := chromium chromedriver promtool redis-server
system-packages:
	@missing=""; for c in $(SYSTEM_COMMANDS); do command -v $$c >/dev/null || missing="$$missing $$c"; done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "installing chromium, chromium-driver, prometheus and redis-server (missing:$$missing)"; \
			apt-get update -q >/dev/null && \
			DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
				chromium chromium-driver prometheus redis-server >/dev/null; \
		else \
			echo "missing:$$missing (the browser, alert-rule and Redis tests will be skipped)"; \
		fi; \
	fi

demo: $(STAMP)
	$(VENV)/bin/uptax scenario run scenarios/flagship.toml

# demo-live: the flagship outage in real time against the fake provider servers, watched at
# http://127.0.0.1:4000/dashboard; it keeps serving the final state after the report until Ctrl-C.
demo-live: $(STAMP)
	$(VENV)/bin/uptax scenario run scenarios/flagship.toml --mode http --serve 4000

# bench: issue 15's benchmarks (the cascade in-process, in requests/s and in instructions per
# request, direct httpx against the runtime on a loopback nginx or the fake server, the
# flagship's simulator), then one table of them all. nginx is the peer that is never the
# bottleneck (peer_overhead.py runs its own on a free port, whatever the package's service
# does; without it the fake provider server stands in); valgrind counts the instructions
# (without it that row is left out). Both are installed when missing, where apt-get can run.
# Benchmarks only: `make test` never needs them.
bench: $(STAMP) bench-packages
	$(PY) bench/all.py

bench-packages:
	@missing=""; for c in nginx valgrind; do \
		command -v $$c >/dev/null || [ -x /usr/sbin/$$c ] || missing="$$missing $$c"; done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "installing$$missing (the benchmarks' loopback peer and instruction counter)"; \
			apt-get update -q >/dev/null && \
			DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
				$$missing >/dev/null; \
		else \
			echo "missing:$$missing (the fake provider server stands in for nginx; no instruction counts without valgrind)"; \
		fi; \
	fi

clean:
	rm -rf $(VENV) build *.egg-info
