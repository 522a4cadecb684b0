# The code artifact of template.yaml's functions, which `sam build` makes with
# `make build-RuntimeLayer` (Metadata: BuildMethod: makefile) in $(ARTIFACTS_DIR).
#
# The layer is `pip install '.[aws]'` for Lambda's python3.12 on x86_64, under python/ (where
# Lambda looks for a layer's Python packages), compiled to bytecode so that a cold start does
# not compile it. It holds no tests, caches, scripts or anything else of the repository: pip
# installs what pyproject.toml lists, from a copy of the files the package is made of.
#
# Two parts, each rebuilt only when what it is made of changes (caches under build/lambda/):
#   deps    the dependencies, when the requirements read from pyproject.toml change (~30 s)
#   tarry   tarry itself, when a file of sdk/ runtime/ lambda_adapter/ infra/ changes (~5 s)
#
#   make build-RuntimeLayer ARTIFACTS_DIR=DIR   what sam build runs (DIR: build/lambda/layer)
#   make clean                                  removes the caches
#
# Needs python3.12 (PYTHON=...): the bytecode is for Lambda's Python. pip fetches Linux wheels
# whatever the machine, so the layer is the same when built on another OS.

PYTHON ?= python3.12
ROOT := $(patsubst %/,%,$(dir $(abspath $(lastword $(MAKEFILE_LIST)))))
CACHE := $(ROOT)/build/lambda
ARTIFACTS_DIR ?= $(CACHE)/layer
# where Lambda puts a layer; tracebacks name these paths
LAYER_PATH := /opt/python
PIP := --quiet --disable-pip-version-check --no-compile
# wheels for Lambda's platform, whatever the machine's
PIP_LAMBDA := --only-binary=:all: --platform manylinux2014_x86_64 --implementation cp \
	--python-version 3.12
PACKAGE_FILES := pyproject.toml README.md sdk runtime lambda_adapter infra

# tarry's dependencies and its aws extra, from pyproject.toml. uvicorn without its [standard]
# extras: uvloop, httptools, watchfiles and websockets (20 MB) serve `tarry serve`, a process
# that never runs on Lambda. Sorted, which puts aioboto3 before boto3: pip then takes boto3's
# version from the botocore that aiobotocore pins, where boto3 first has it backtrack through
# boto3's releases for minutes.
define REQUIREMENTS_PY
import sys, tomllib
project = tomllib.load(open(sys.argv[1], "rb"))["project"]
requirements = project["dependencies"] + project["optional-dependencies"]["aws"]
for requirement in sorted(requirements):
    print(requirement.replace("uvicorn[standard]", "uvicorn"))
endef
export REQUIREMENTS_PY

.PHONY: build-RuntimeLayer clean FORCE

# hard links where it can (the caches are never changed in place, only replaced)
build-RuntimeLayer: $(CACHE)/deps.done $(CACHE)/tarry.done
	rm -rf "$(ARTIFACTS_DIR)/python"
	mkdir -p "$(ARTIFACTS_DIR)/python"
	cp -al "$(CACHE)/deps/." "$(CACHE)/tarry/." "$(ARTIFACTS_DIR)/python/" 2>/dev/null \
		|| cp -a "$(CACHE)/deps/." "$(CACHE)/tarry/." "$(ARTIFACTS_DIR)/python/"
	@du -sh "$(ARTIFACTS_DIR)/python" | sed 's/\t.*/ in the layer/'

# rewritten only when its content changes, so that what depends on it is not rebuilt for nothing
$(CACHE)/requirements.txt: FORCE
	@mkdir -p "$(CACHE)"
	@"$(PYTHON)" -c "$$REQUIREMENTS_PY" "$(ROOT)/pyproject.toml" >"$@.new"
	@cmp -s "$@.new" "$@" && rm "$@.new" || mv "$@.new" "$@"

$(CACHE)/sources.txt: FORCE
	@mkdir -p "$(CACHE)"
	@cd "$(ROOT)" && find $(PACKAGE_FILES) -type f ! -path '*/__pycache__/*' ! -name '*.pyc' \
		-exec sha1sum {} + | sort >"$@.new"
	@cmp -s "$@.new" "$@" && rm "$@.new" || mv "$@.new" "$@"

$(CACHE)/deps.done: $(CACHE)/requirements.txt $(CACHE)/venv.done
	rm -rf "$(CACHE)/deps" "$@"
	"$(CACHE)/venv/bin/python" -m pip install $(PIP) $(PIP_LAMBDA) --target "$(CACHE)/deps" -r "$<"
	rm -rf "$(CACHE)/deps/bin"
	"$(PYTHON)" -m compileall -q -j 0 --invalidation-mode unchecked-hash \
		-s "$(CACHE)/deps" -p $(LAYER_PATH) "$(CACHE)/deps"
	touch "$@"

# pip builds tarry from a copy of its files (no build/ or egg-info of earlier builds), with the
# setuptools that pyproject.toml asks for from the build venv rather than a fresh one each time
$(CACHE)/tarry.done: $(CACHE)/sources.txt $(CACHE)/venv.done
	rm -rf "$(CACHE)/tarry" "$(CACHE)/src" "$@"
	mkdir -p "$(CACHE)/src"
	cd "$(ROOT)" && cp -r $(PACKAGE_FILES) "$(CACHE)/src/"
	"$(CACHE)/venv/bin/python" -m pip install $(PIP) --no-deps \
		--no-build-isolation --target "$(CACHE)/tarry" "$(CACHE)/src"
	rm -rf "$(CACHE)/tarry/bin" "$(CACHE)/src"
	"$(PYTHON)" -m compileall -q -j 0 --invalidation-mode unchecked-hash \
		-s "$(CACHE)/tarry" -p $(LAYER_PATH) "$(CACHE)/tarry"
	touch "$@"

# the build venv: a current pip (its resolver and PEP 658 metadata) and setuptools
$(CACHE)/venv.done:
	rm -rf "$(CACHE)/venv"
	"$(PYTHON)" -m venv "$(CACHE)/venv"
	"$(CACHE)/venv/bin/python" -m pip install $(PIP) --upgrade pip "setuptools>=77"
	touch "$@"

clean:
	rm -rf "$(CACHE)"

FORCE:
