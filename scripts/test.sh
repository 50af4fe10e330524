#!/usr/bin/env bash
# `npm test`: type-check, then the mocha suite in two concurrent groups, then the contract tests.
#   heavy: tests tagged @docker or @qemu (real containers, micro-VMs, devnets), run one file at a time;
#   light: everything else (pure code, SQLite, the in-process chain, in-memory yagna), run beside them.
# Light tests never touch the Docker engine or QEMU, so they cannot disturb the heavy ones' leak checks.
# The light group's report is printed after the heavy one's; the exit status is non-zero if either failed.
set -uo pipefail
cd "$(dirname "$0")/.."
npm run --silent typecheck || exit 1
light_log=$(mktemp -t airqube-light-tests.XXXXXX)
trap 'rm -f "$light_log"' EXIT
npx mocha --grep '@docker|@qemu' --invert >"$light_log" 2>&1 &
light_pid=$!
npx mocha --grep '@docker|@qemu'
heavy_rc=$?
wait "$light_pid"
light_rc=$?
echo
echo "== tests without Docker or QEMU (ran beside the ones above) =="
cat "$light_log"
npm run --silent test:contracts
contracts_rc=$?
echo "test groups: heavy exit $heavy_rc, light exit $light_rc, contracts exit $contracts_rc"
[ "$heavy_rc" = 0 ] && [ "$light_rc" = 0 ] && [ "$contracts_rc" = 0 ]
