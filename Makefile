# cni-render: `make demo` shows the plugin working, `make test` runs every test.
# Both set themselves up on a fresh Debian machine (run as root).

PYTHON ?= $(shell test -x /usr/bin/python3 && echo /usr/bin/python3 || echo python3)
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# Every Debian package anything here uses: the tests and the demo, the real
# clients (podman, libcni), the local cluster (containerd, buildah, debootstrap,
# ...) and its lint (shellcheck). `make deps` installs what is missing; .ci/run
# calls it.
PACKAGES := iproute2 util-linux nftables iptables conntrack curl netcat-openbsd openssl file \
	busybox-static python3 python3-venv time gcc libc6-dev \
	containernetworking-plugins golang-go golang-github-appc-cni-dev podman runc conmon \
	containerd buildah debootstrap shellcheck

.PHONY: all deps venv install demo test bench distclean update-golden cni uninstall-cni \
	cluster daemonset smoke clean down e2e conformance

all: test

# The Debian packages (skipped when all are present).
deps:
	@missing=$$(for p in $(PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

venv: $(BIN)/python

# The package is installed (not editable) so tests run what a node gets.
install: venv
	$(BIN)/pip install -q --disable-pip-version-check --require-hashes --no-deps -r requirements.lock  # what the image runs
	$(BIN)/pip install -q --disable-pip-version-check -r requirements-test.txt
	rm -rf build *.egg-info   # a stale build/ would install files that no longer exist
	$(BIN)/pip install -q --disable-pip-version-check --no-deps --force-reinstall .
	@touch $(STAMP)

demo: deps install
	$(BIN)/python -m cni_render.cli.demo

test: deps install
	$(BIN)/pytest -p no:cacheprovider tests/unit tests/netns tests/clients

update-golden: install
	$(BIN)/pytest -p no:cacheprovider tests/unit/test_golden.py --update-golden

bench: deps install
	$(BIN)/python benchmarks/add_del.py

# Install on this machine as a node, by hand (what a DaemonSet does per node):
# a private virtualenv, the executables written into the runtime's plugin
# directory by `cni-render install` (the C shim when a compiler is present),
# then the conflist, written to a temporary name and renamed so the runtime
# never reads half a file. Start the daemon with deploy/cni-render.service.
PREFIX       ?= /opt/cni-render
CNI_BIN_DIR  ?= /opt/cni/bin
CNI_CONF_DIR ?= /etc/cni/net.d
CONFLIST     ?= deploy/10-cni-render.conflist

cni: deps
	$(PYTHON) -m venv $(PREFIX)
	$(PREFIX)/bin/pip install -q --disable-pip-version-check .
	$(PREFIX)/bin/cni-render install --bin-dir $(CNI_BIN_DIR)
	install -d $(CNI_CONF_DIR)
	install -m 0644 $(CONFLIST) $(CNI_CONF_DIR)/.10-cni-render.conflist.tmp
	mv -f $(CNI_CONF_DIR)/.10-cni-render.conflist.tmp $(CNI_CONF_DIR)/10-cni-render.conflist

uninstall-cni:
	rm -f $(CNI_CONF_DIR)/10-cni-render.conflist $(CNI_BIN_DIR)/cni-render $(CNI_BIN_DIR)/cni-render-ipam
	rm -rf $(PREFIX)

distclean:
	rm -rf $(VENV) build *.egg-info

# --- Kubernetes ---------------------------------------------------------------
# The seed's flow on a real multi-node cluster: `make cluster daemonset smoke`
# prints "It works!" for pods on every node; `make clean` removes the test pods
# and uninstalls cni-render; `make down` removes the cluster. The scripts in
# cluster/ drive a provider (cluster/lib/env.sh): kind (kind.yaml) where kind
# and a Docker engine answer, otherwise the local cluster (nodes are namespaces
# on this machine, Kubernetes built from source); CLUSTER_PROVIDER=local|kind
# chooses.
NODES    ?= 3
IPFAMILY ?= ipv4

cluster: deps
	NODES=$(NODES) IPFAMILY=$(IPFAMILY) cluster/up.sh
daemonset: deps
	cluster/daemonset.sh
smoke:
	cluster/smoke.sh
clean:
	cluster/uninstall.sh
down:
	cluster/down.sh

# The end-to-end suite on a fresh dual-stack cluster: up, daemonset, the suite,
# the logs of every component into .cluster/logs when it fails, and down also
# then.
E2E_NODES    ?= 3
E2E_IPFAMILY ?= dual
e2e: deps install
	@cluster/down.sh >/dev/null 2>&1 || true
	rm -rf .cluster/logs
	status=0; \
	{ NODES=$(E2E_NODES) IPFAMILY=$(E2E_IPFAMILY) cluster/up.sh && cluster/daemonset.sh && \
	  $(BIN)/pytest -p no:cacheprovider tests/e2e; } || status=$$?; \
	if [ $$status -ne 0 ]; then cluster/logs.sh || true; fi; \
	cluster/down.sh || status=1; \
	if [ $$status -ne 0 ]; then echo "e2e failed; component logs are in .cluster/logs"; fi; \
	exit $$status

# Kubernetes' own [sig-network] conformance tests that need no cloud (Granular
# Checks, Services, Proxy, HostPort) on the cluster, brought up with the
# DaemonSet if it is not (cluster/conformance.sh says what is left out and why).
conformance: deps
	@test -f .cluster/cluster.env || NODES=$(NODES) IPFAMILY=$(IPFAMILY) cluster/up.sh
	@cluster/kubectl -n kube-system get ds cni-render >/dev/null 2>&1 || cluster/daemonset.sh
	cluster/conformance.sh
