# Two commands do all the set-up on a fresh machine:
#   make demo   - the console on the embedded local fleet
#   make test   - the test suite (builds the lab's real components first: make bin)
# Both create .venv and install the project with its test extras on first use.
#   make bin     - etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok and
#                  helm from their pinned Go modules (build/versions.env) into .cache/bin/;
#                  needs only go; cached machine-wide in ~/.cache/release-console/bin-<hash>/
#   make modules - regenerate build/go/*/go.mod and go.sum after changing a pin

VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test bench install clean bin modules

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP) system-deps

# The OCI registry tests use Debian's docker-registry; screenshots use rsvg-convert; the
# metric gate tests Debian's prometheus; the event printer's EAGAIN tests strace.
.PHONY: system-deps
system-deps:
	@command -v docker-registry >/dev/null 2>&1 && command -v rsvg-convert >/dev/null 2>&1 && \
	  command -v prometheus >/dev/null 2>&1 && command -v strace >/dev/null 2>&1 || \
	  { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
	    --no-install-recommends docker-registry librsvg2-bin prometheus strace; }

demo: $(STAMP)
	$(VENV)/bin/release-console demo

# Four workers on two cores: the suite mostly waits (simulated rollouts, bakes, gates,
# pacing windows, servers and processes - most tests use under a tenth of their time in
# CPU); the `real` tests form one xdist group, so only one worker starts the lab.
test: install bin
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(PY) -m pytest -q -n 4 --dist loadgroup

# Every benchmark prints its own figures (release_fleet.py takes a few minutes).
bench: $(STAMP) bin
	$(PY) bench/sim_scale.py
	$(PY) bench/history_scale.py
	$(PY) bench/status_scale.py
	$(PY) bench/tui_load.py
	$(PY) bench/release_fleet.py
	$(PY) bench/release_fleet_helm.py
	$(PY) bench/pacing.py
	$(PY) bench/shards.py
	$(PY) bench/lab_start.py --demo

bin:
	sh build/bin.sh

modules:
	sh build/modules.sh

clean:
	rm -rf $(VENV) .pytest_cache
