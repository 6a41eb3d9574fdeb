#!/usr/bin/env bash
# The one test command: installs the tools the tests use, vets, runs the unit
# and interop tests (with the race detector where affordable), then the
# end-to-end suites. Missing external tools FAIL tests here rather than skip.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
	export PATH=/usr/local/go/bin:$PATH
fi
export ENCBLK_REQUIRE_TOOLS=1
# Several tests mount FUSE filesystems and loop devices; sbin must be on PATH.
export PATH=$PATH:/usr/local/sbin:/usr/sbin:/sbin

./scripts/deps.sh

echo "== go vet"
go vet ./...

echo "== go test"
go test -count=1 -timeout 20m ./...

# Packages whose concurrency the race detector must see. Crypto- and
# KDF-heavy packages are left out: under -race they cost minutes and have
# no shared state to race on.
race_pkgs=()
for p in ./pkg/nbd ./pkg/volume ./pkg/blockdev ./internal/daemon ./pkg/sed; do
	[ -d "$p" ] && race_pkgs+=("$p/...")
done
if [ ${#race_pkgs[@]} -gt 0 ]; then
	echo "== go test -race ${race_pkgs[*]}"
	go test -count=1 -race -timeout 20m "${race_pkgs[@]}"
fi

# End-to-end suites, as they exist.
if [ -x test/vm/run.sh ]; then
	echo "== test/vm"
	./test/vm/run.sh
fi

echo "== all tests passed"
