# bpfreplay: `make demo` sets everything up and runs the main job on the bundled
# reference; `make test` sets up and runs the tests. Both work on a fresh Debian 12
# machine as root (the kernel must have BTF and allow bpf()).

PYTHON   ?= python3
VENV     := .venv
BIN      := $(VENV)/bin
REF      := reference/libbpf-bootstrap
DEB_PKGS := clang llvm libbpf-dev bpftool libelf-dev zlib1g-dev strace make gcc pkg-config

.PHONY: setup system venv reference testprogs demo test lint bench clean

setup: system venv

# Debian packages and the kernel file systems libbpf and our tests use.
system:
	@missing=""; for p in $(DEB_PKGS); do \
	  dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi
	@mountpoint -q /sys/kernel/debug   || mount -t debugfs debugfs /sys/kernel/debug   || true
	@mountpoint -q /sys/kernel/tracing || mount -t tracefs tracefs /sys/kernel/tracing || true
	@mountpoint -q /sys/fs/bpf         || mount -t bpf bpf /sys/fs/bpf                 || true

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

reference: system
	$(MAKE) -s -C $(REF)

testprogs: system
	$(MAKE) -s -C tests/progs

demo: setup reference
	@echo "== bpfreplay record: the reference minimal (libbpf $$(dpkg-query -W -f='$${Version}' libbpf1)) for 2 s"
	$(BIN)/bpfreplay record -o /tmp/bpfreplay-demo.mp -- $(REF)/minimal 2
	@echo
	@echo "== bpfreplay explain --json: the recorded calls (first 200 characters of each)"
	@$(BIN)/bpfreplay explain --json /tmp/bpfreplay-demo.mp | cut -c1-200

test: setup reference testprogs
	$(BIN)/pytest -q

lint: venv
	$(BIN)/ruff check bpfreplay tests tools bench

clean:
	$(MAKE) -s -C $(REF) clean || true
	$(MAKE) -s -C tests/progs clean || true
