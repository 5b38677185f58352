#!/usr/bin/env bash
# Runner of `cargo xtask gpu-tests` (packed beside the test binaries): runs
# every carried kernel and model test binary on the GPU machine, with missing
# hardware features as failures (QWGPU_REQUIRE_HW=1) and coverage records,
# then writes to OUT: summary.txt (one line per binary, exit code and time),
# coverage.txt (the coverage table) and logs.tgz (every log and record).
#
# usage: bash run.sh REPO OUT   (REPO: the checkout, for tests/fixtures and
# each crate's folder as working directory; OUT: where results go)
set -u
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "${1:?usage: run.sh REPO OUT}" && pwd)"
out="${2:?usage: run.sh REPO OUT}"
mkdir -p "$out" "$here/logs"
export QWGPU_COVERAGE_DIR="$here/coverage"
export QWGPU_REQUIRE_HW="${QWGPU_REQUIRE_HW:-1}"
export QWGPU_FIXTURES_DIR="$repo/tests/fixtures"
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp/xdg-runtime}"
mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"
# Each binary's limit: the whole run must fit one device call (10 minutes).
limit="${QWGPU_GPU_TEST_TIMEOUT:-240}"
rm -rf "$QWGPU_COVERAGE_DIR"
summary="$out/summary.txt"
echo "qwgpu gpu-tests $(cat "$here/COMMIT" 2>/dev/null) on $(uname -n), QWGPU_REQUIRE_HW=$QWGPU_REQUIRE_HW" > "$summary"
failed=0
while read -r bin dir; do
  [ -z "$bin" ] && continue
  log="$here/logs/$(echo "$bin" | tr / _).log"
  start=$(date +%s)
  (cd "$repo/$dir" && timeout "$limit" "$here/bin/$bin" ${QWGPU_GPU_TEST_ARGS:-}) > "$log" 2>&1
  rc=$?
  secs=$(( $(date +%s) - start ))
  result="$(grep -E '^test result:' "$log" | tail -1)"
  echo "$bin: exit $rc in ${secs} s; $result" | tee -a "$summary"
  [ "$rc" -ne 0 ] && failed=$((failed + 1))
done < "$here/manifest.txt"
"$here/xtask" coverage "$QWGPU_COVERAGE_DIR" > "$out/coverage.txt" 2>&1
cat "$out/coverage.txt"
echo "binaries failed: $failed" | tee -a "$summary"
tar -C "$here" -czf "$out/logs.tgz" logs coverage
[ "$failed" -eq 0 ]
