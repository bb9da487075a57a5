# Both targets do all set-up on a fresh machine (virtual environments + install), then run.
# `make test` (what CI runs) = test-3.11 + test-3.12 + wheel-check:
#   test-3.11    the whole suite on Python 3.11 in .venv (editable install)
#   test-3.12    the whole suite on Python 3.12 in .venv312 (editable install)
#   wheel-check  sdist + wheel built into dist/, the wheel (not editable) installed into .venv-wheel
#                (Python 3.12: the wheel is tried on the newest supported Python; no other copy
#                of graphmvp there; its own download of the stack), then graphmvp-download list, graphmvp-demo and a
#                smoke subset of the tests run against it
# Python 3.12 is required, not optional: without it `make test` stops with a message saying how to
# provide it (a skipped 3.12 run would let a 3.12 break land unnoticed).
PYTHON ?= python3
VENV ?= .venv
VENV312 ?= .venv312
WHEEL_VENV ?= .venv-wheel
STAMP = $(VENV)/.installed
STAMP312 = $(VENV312)/.installed
# python3.12 on PATH, else pyenv's 3.12 (pyenv's python3.12 shim answers only when 3.12 is selected)
PYTHON312 ?= $(firstword $(foreach p,python3.12 $(wildcard $(HOME)/.pyenv/versions/3.12*/bin/python3.12),\
	$(shell $(p) -c 'import sys; print(sys.version_info[:2] == (3, 12))' 2>/dev/null | grep -q True && echo $(p))))
# against the installed wheel, run from outside the checkout (a subprocess `python -m/-c` started in
# the repository root would import the checkout's graphmvp/, which lacks the mapped subpackages)
SMOKE_TESTS = tests/test_packaging.py tests/test_checkpoints.py tests/test_pretrained.py \
	tests/test_store_roundtrip.py tests/test_finetune_metrics.py tests/test_gin.py
PACKAGE_FILES = setup.cfg setup.py pyproject.toml

.PHONY: demo test test-3.11 test-3.12 wheel-check install clean

demo: $(STAMP)
	$(VENV)/bin/graphmvp-demo

test: test-3.11 test-3.12 wheel-check

# $(call suite,VENV): the whole suite with that environment's Python, timed
suite = @start=$$(date +%s); $(1)/bin/python -m pytest -q tests; rc=$$?; \
	echo "== test suite on $$($(1)/bin/python --version): $$(( $$(date +%s) - start )) s"; exit $$rc
# $(call editable,PYTHON,VENV): the venv (if missing) with the editable install and the test extra
editable = test -x $(2)/bin/python || $(1) -m venv $(2); \
	$(2)/bin/pip install --quiet --upgrade pip && $(2)/bin/pip install --quiet -e '.[test]'

test-3.11: $(STAMP)
	$(call suite,$(VENV))

test-3.12: $(STAMP312)
	$(call suite,$(VENV312))

install: $(STAMP)

$(STAMP): $(PACKAGE_FILES)
	$(call editable,$(PYTHON),$(VENV))
	touch $(STAMP)

NEED_312 = @test -n "$(PYTHON312)" || { echo "make: Python 3.12 not found (no python3.12 on PATH, no ~/.pyenv/versions/3.12*);" \
	"install it (e.g. pyenv install 3.12) or pass PYTHON312=/path/to/python3.12" >&2; exit 1; }

$(STAMP312): $(PACKAGE_FILES)
	$(NEED_312)
	$(call editable,$(PYTHON312),$(VENV312))
	touch $(STAMP312)

wheel-check: $(STAMP)
	@echo "== wheel check"
	rm -rf dist
	$(VENV)/bin/python -m build --outdir dist . > build.log 2>&1 || { tail -30 build.log; exit 1; }
	rm -f build.log
	ls -l dist
	$(NEED_312)
	test -x $(WHEEL_VENV)/bin/python || $(PYTHON312) -m venv $(WHEEL_VENV)
	$(WHEEL_VENV)/bin/pip uninstall --quiet --yes graphmvp 2>/dev/null || true
	$(WHEEL_VENV)/bin/pip install --quiet --upgrade pip
	$(WHEEL_VENV)/bin/pip install --quiet "$$(ls dist/graphmvp-*.whl)[test]"
	$(WHEEL_VENV)/bin/pip show --files graphmvp | grep -E "^(Location|Editable)|demo/zinc_demo.csv|manifest.json|\.pt$$"
	$(WHEEL_VENV)/bin/graphmvp-download list
	$(WHEEL_VENV)/bin/graphmvp-demo --out runs/wheel-demo
	cd $(WHEEL_VENV) && GRAPHMVP_WHEEL_CHECK=1 $(abspath $(WHEEL_VENV))/bin/python -m pytest -q -p no:cacheprovider \
		-c $(CURDIR)/setup.cfg --rootdir $(CURDIR) $(addprefix $(CURDIR)/,$(SMOKE_TESTS))

clean:
	rm -rf $(VENV) $(VENV312) $(WHEEL_VENV) runs dist build *.egg-info
