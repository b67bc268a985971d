# The two commands: `make run` (platform on the embedded default) and `make test` (whole suite).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cksum requirements.txt | cut -d' ' -f1)

.PHONY: venv run test migrate schema bench bench-quick clean

$(STAMP): requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	@rm -f $(VENV)/.installed-* && touch $@

venv: $(STAMP)

migrate: venv
	$(PY) manage.py migrate --noinput

run: migrate
	$(PY) manage.py collectstatic --noinput --verbosity 0
	$(PY) manage.py bootstrap_demo
	@scripts/run.sh

test: venv
	@scripts/test.sh $(ARGS)

bench: venv
	$(PY) -m bench.run --mode full

bench-quick: venv
	$(PY) -m bench.run --mode quick

schema: venv
	$(PY) manage.py spectacular --validate --fail-on-warn --file var/openapi.yaml

clean:
	rm -rf var/celery var/static
