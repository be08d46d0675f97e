# cni-render: `make demo` shows the plugin working, `make test` runs every test.
# Both set themselves up on a fresh Debian machine (run as root).

PYTHON ?= $(shell test -x /usr/bin/python3 && echo /usr/bin/python3 || echo python3)
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

DEBIAN_PACKAGES := iproute2 util-linux nftables curl busybox-static python3-venv time gcc libc6-dev \
	containernetworking-plugins golang-go golang-github-appc-cni-dev podman runc

.PHONY: all deps venv install demo test bench clean update-golden cni uninstall-cni

all: test

# System packages the tests and the demo use (skipped when all are present).
deps:
	@missing=$$(for p in $(DEBIAN_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

venv: $(BIN)/python

# The package is installed (not editable) so tests run what a node gets.
install: venv
	$(BIN)/pip install -q --disable-pip-version-check -r requirements-test.txt
	rm -rf build *.egg-info   # a stale build/ would install files that no longer exist
	$(BIN)/pip install -q --disable-pip-version-check --no-deps --force-reinstall .
	@touch $(STAMP)

demo: deps install
	$(BIN)/python -m cni_render.demo

test: deps install
	$(BIN)/pytest -p no:cacheprovider tests

update-golden: install
	$(BIN)/pytest -p no:cacheprovider tests/test_golden.py --update-golden

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

clean:
	rm -rf $(VENV) build *.egg-info
