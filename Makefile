# The two commands: `make up` (whole stack on this machine) and `make test` (whole suite).
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
CHECKOV_STAMP := .venv-checkov/.installed

.PHONY: up down status users tokens rehearsal test venv system-deps train model clean

$(STAMP): requirements.txt requirements-dev.txt
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $(STAMP)

$(CHECKOV_STAMP): requirements-checkov.txt
	$(PYTHON) -m venv .venv-checkov
	.venv-checkov/bin/python -m pip install -q --upgrade pip
	.venv-checkov/bin/python -m pip install -q -r requirements-checkov.txt
	touch $(CHECKOV_STAMP)

venv: $(STAMP)

system-deps:
	scripts/install_system_deps.sh

up: system-deps venv
	$(PY) -m scripts.stack up

down:
	$(PY) -m scripts.stack down

status:
	$(PY) -m scripts.stack status

# The admin CLI against the local stack, e.g. make users ARGS='create alice --role clinician'
users tokens:
	$(PY) -m scripts.stack $@ $(ARGS)

# The AWS layout as network namespaces with the security groups as firewalls (root; part of make test)
rehearsal: system-deps venv
	$(PY) -m scripts.rehearsal

test: system-deps venv $(CHECKOV_STAMP)
	$(PY) -m pytest

train: venv
	$(PY) -m model.cnn --data $${PNEUMONIA_DATA:-../shared/data/chest_xray} --output output

# The shipped model's recipe (documentation/MODEL_CARD.md, scripts/train_model.sh): a self-supervised
# pre-training of a MobileNetV2 (20 epochs, continued 15 more), a fov-neutral member fine-tuned in full
# from the longer backbone and a fov-margin member from the shorter, then the two members' ensemble,
# about 3.3 hours on 2 CPU cores, written to runs/model/ (copy its three files to models/ to serve it).
DATA ?= $(or $(PNEUMONIA_DATA),../shared/data/chest_xray)
model: venv
	PY=$(PY) scripts/train_model.sh $(DATA) runs

clean:
	rm -rf output .pytest_cache
