# Captionsite: `make run` starts the service, `make test` runs the whole test suite.

PYTHON ?= python3.11
VENV := .venv
VENV_PYTHON := $(VENV)/bin/python

# The stamps name a hash of the requirement files, so an edit to either reinstalls
# and an unchanged checkout skips pip entirely.
RUN_HASH := $(shell cat requirements.txt | sha256sum | cut -c1-16)
DEV_HASH := $(shell cat requirements.txt requirements-dev.txt | sha256sum | cut -c1-16)
RUN_STAMP := $(VENV)/.installed-run-$(RUN_HASH)
DEV_STAMP := $(VENV)/.installed-dev-$(DEV_HASH)

.PHONY: run test chaos venv venv-dev chromium migrate

run: venv
	$(VENV_PYTHON) scripts/run.py

# pytest exits with 5 when it collected no test, which is a broken suite, not a pass.
test: venv-dev chromium
	@$(VENV_PYTHON) -m pytest $(PYTEST_ARGS); status=$$?; \
	if [ $$status -eq 5 ]; then echo "make test: pytest collected no tests"; fi; \
	exit $$status

# The fault tests' long versions: 1,000 uploads, 2,000 tasks, repeated kills and
# restarts. Ends with what became of every accepted job; lost and duplicated must be 0.
chaos: venv-dev
	CAPTIONSITE_CHAOS=1 $(VENV_PYTHON) -m pytest -m faults tests/faults $(PYTEST_ARGS)

migrate: venv
	$(VENV_PYTHON) manage.py migrate --noinput

venv: $(RUN_STAMP)

venv-dev: $(DEV_STAMP)

$(RUN_STAMP): requirements.txt
	test -x $(VENV_PYTHON) || $(PYTHON) -m venv $(VENV)
	$(VENV_PYTHON) -m pip install -r requirements.txt
	rm -f $(VENV)/.installed-run-*
	touch $@

$(DEV_STAMP): $(RUN_STAMP) requirements-dev.txt
	$(VENV_PYTHON) -m pip install -r requirements-dev.txt
	rm -f $(VENV)/.installed-dev-*
	touch $@

# The browser tests drive Debian's Chromium through Playwright. The CJK font lets
# screenshots of the Chinese pages show characters instead of boxes.
chromium:
	@if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ] || [ ! -d /usr/share/fonts/truetype/wqy ]; then \
		echo "Installing Debian's chromium, chromium-driver and fonts-wqy-microhei for the browser tests"; \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium chromium-driver fonts-wqy-microhei; \
	fi
