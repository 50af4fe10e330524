#!/usr/bin/env bash
# `npm test`: the mocha suite in concurrent groups with the type-check beside it, then the contract tests.
#   heavy: tests tagged @docker or @qemu (real containers, micro-VMs, devnets): the output soak first, then the
#          other files in AIRQUBE_TEST_JOBS (default 2) worker processes, one file each at a time, slowest first;
#   light: everything else (pure code, SQLite, the in-process chain, in-memory yagna), one process beside them.
# Each worker's leak checks look only at its own containers (labelled with its pid), so files cannot disturb
# each other; the escape suite's report is shared through one cache directory. The light group's report is
# printed after the heavy one's; the exit status is non-zero if any group failed.
set -uo pipefail
cd "$(dirname "$0")/.."
jobs="${AIRQUBE_TEST_JOBS:-2}"
# every temporary file of the run (tests, the CLI they start, the sandboxes' staging) goes under one directory that
# is removed at the end, so no run leaves anything in /tmp whatever a test forgets or a killed process leaves
run_tmp=$(mktemp -d -t airqube-test-run.XXXXXX)
chmod 1777 "$run_tmp" # like /tmp: sandboxes running as unprivileged host uids traverse it
export TMPDIR="$run_tmp"
light_log=$(mktemp -t airqube-light-tests.XXXXXX)
typecheck_log=$(mktemp -t airqube-typecheck.XXXXXX)
soak_log=$(mktemp -t airqube-soak-tests.XXXXXX)
heavy_log=$(mktemp -t airqube-heavy-tests.XXXXXX)
AIRQUBE_TEST_PROBE_CACHE=$(mktemp -d -t airqube-test-probe-cache.XXXXXX)
export AIRQUBE_TEST_PROBE_CACHE
# each heavy file's wall time (test/helpers/file-timing.ts), printed slowest first at the end
AIRQUBE_TEST_TIMINGS=$(mktemp -t airqube-test-timings.XXXXXX)
export AIRQUBE_TEST_TIMINGS
trap 'rm -rf "$light_log" "$typecheck_log" "$soak_log" "$heavy_log" "$AIRQUBE_TEST_PROBE_CACHE" "$AIRQUBE_TEST_TIMINGS" "$run_tmp"' EXIT

# the type-check (sources, tests, examples) runs beside the tests (mocha runs them through tsx, which does not
# check types); its errors are printed and fail the run at the end
npm run --silent typecheck >"$typecheck_log" 2>&1 &
typecheck_pid=$!

# The output soak runs first, without the other heavy files: it loads the machine on purpose (a CPU hog beside
# the qubes), and timing-sensitive devnet tests beside it would fail for that reason only. Its two tiers run
# side by side (container: soak.test.ts; micro-VM: soak-microvm.test.ts).
soak=(test/sandbox/soak.test.ts test/sandbox/soak-microvm.test.ts)
# then the slowest files first, so that no long file starts last (measured in CI; the rest in path order)
slow=(
  test/devnet/adversaries.test.ts
  test/probes/mutation.test.ts
  test/package/package.test.ts
  test/net/public-network.test.ts
  test/cli/outcomes.test.ts
  test/devnet/payments-v2.test.ts
  test/sandbox/microvm.test.ts
  test/images/ship-image.test.ts
  test/devnet/payments-crash.test.ts
  test/dashboard/devnet-browser.test.ts
  test/images/microvm-images.test.ts
  test/devnet/profile.test.ts
  test/pdf/convert-pdf.test.ts
  test/devnet/payments-faults.test.ts
  test/golem/runtime/runtime.test.ts
  test/golem/runtime/e2e.test.ts
  test/golem/http/golem-http.test.ts
)
files=()
for f in "${slow[@]}"; do [ -f "$f" ] && files+=("$f"); done
while IFS= read -r f; do
  case " ${files[*]} " in *" $f "*) ;; *) files+=("$f") ;; esac
done < <(find test -name '*.test.ts' -not -path 'test/contracts/*' -not -path 'test/sandbox/soak*.test.ts' | sort)

npx mocha --grep '@docker|@qemu' --invert >"$light_log" 2>&1 &
light_pid=$!
timing=(--require test/helpers/file-timing.ts)
npx mocha --no-config -n import=tsx "${timing[@]}" --timeout 60000 --exit --parallel --jobs 2 --grep '@docker|@qemu' "${soak[@]}" \
  2>&1 | tee "$soak_log"
soak_rc=${PIPESTATUS[0]}
npx mocha --no-config -n import=tsx "${timing[@]}" --timeout 60000 --exit --parallel --jobs "$jobs" \
  --grep '@docker|@qemu' "${files[@]}" 2>&1 | tee "$heavy_log"
heavy_rc=${PIPESTATUS[0]}
wait "$light_pid"
light_rc=$?
echo
echo "== tests without Docker or QEMU (ran beside the ones above) =="
cat "$light_log"
npm run --silent test:contracts
contracts_rc=$?
wait "$typecheck_pid"
typecheck_rc=$?
echo
echo "== type-check (ran beside the tests) =="
cat "$typecheck_log"
# the failures of every group once more at the very end, where a truncated CI log still shows them (a group that
# failed without mocha's "failing" list, e.g. a crashed worker, shows its last lines)
repeat_failures() { # log rc
  if grep -qE '^  [0-9]+ failing' "$1"; then
    echo
    echo "== failures (repeated from above) =="
    sed -n '/^  [0-9]* failing/,$p' "$1" | head -c 20000
  elif [ "$2" != 0 ]; then
    echo
    echo "== the end of a group that failed (exit $2) =="
    tail -n 60 "$1"
  fi
}
echo
echo "== the slowest files with Docker or QEMU (wall ms, each in its worker) =="
sort -rn "$AIRQUBE_TEST_TIMINGS" | head -n 25
repeat_failures "$soak_log" "$soak_rc"
repeat_failures "$heavy_log" "$heavy_rc"
repeat_failures "$light_log" "$light_rc"
echo "test groups: soak exit $soak_rc, heavy exit $heavy_rc, light exit $light_rc, contracts exit $contracts_rc, typecheck exit $typecheck_rc"
[ "$soak_rc" = 0 ] && [ "$heavy_rc" = 0 ] && [ "$light_rc" = 0 ] && [ "$contracts_rc" = 0 ] && [ "$typecheck_rc" = 0 ]
