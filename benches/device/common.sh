# Sourced by the device-call scripts of this folder (run from the checkout's
# root on the GPU machine, carry [".gl", ".gpub"] and what a script names):
# the Vulkan loader, the payload of `.gpub/bin.tar.xz` (README: "Local →
# device recipe"), a clock for the call's budget and helpers.
S=$(date +%s)
left() { echo $(( ${BUDGET:-540} - ($(date +%s) - S) )); }
for f in .gl/*.deb; do dpkg -x "$f" / >/dev/null; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
export XDG_RUNTIME_DIR=/tmp/xdg; mkdir -p $XDG_RUNTIME_DIR; chmod 700 $XDG_RUNTIME_DIR
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
R=$PWD
mkdir -p /tmp/b; [ -x /tmp/b/xtask ] || tar -C /tmp/b -xJf .gpub/bin.tar.xz
echo "payload of $(cat /tmp/b/COMMIT)"
Q=/tmp/b/qwgpu; [ -x /tmp/b/qwgpu.bin ] && Q=/tmp/b/qwgpu.bin
K=/tmp/b/tests/kernels
M=/dev/shm/m
# Random-weight folders of real geometry in $M, made once per machine in the
# background (9B BF16 + block FP8, then the 35B-A3B GPTQ-Int4, then 0.8B).
makem() {
  { [ -f $M/MADE9 ] || [ -f /tmp/making ]; } && return
  touch /tmp/making
  (mkdir -p $M /tmp/tok; cd "$R"
   python3 benches/make_models.py hf 9B $M /tmp/tok --fp8 > /tmp/make9.log 2>&1; touch $M/MADE9
   python3 benches/make_models.py hf 35B-A3B $M /tmp/tok --gptq > /tmp/make35.log 2>&1; touch $M/MADE35
   python3 benches/make_models.py hf 0.8B $M /tmp/tok > /tmp/make08.log 2>&1; touch $M/MADE08) &
}
waitm() { while [ ! -f $M/$1 ] && [ "$(left)" -gt 60 ]; do sleep 2; done; ls $M; }
# t NAME ARGS...: a kernel test filter in the background, hardware required.
t() {
  n=$1; shift
  (cd "$R/crates/kernels"; s=$(date +%s)
   QWGPU_REQUIRE_HW=1 QWGPU_FIXTURES_DIR="$R/tests/fixtures" timeout "${TL:-170}" $K "$@" > "$OUT/k/$n.log" 2>&1
   echo "$n rc $? $(( $(date +%s) - s ))s" >> "$OUT/k/rc.txt") &
}
# What the kernel tests started with t printed: results, failures, panics.
tests_summary() {
  cat "$OUT/k/rc.txt"
  for f in "$OUT"/k/*.log; do
    echo "== $(basename "$f"): $(grep -E '^test result' "$f" | tail -1)"
    grep -E "^test .*FAILED$|has been running" "$f" | head -12
    grep -E "panicked at" -A4 "$f" | grep -v "^--$\|backtrace\|RUST_BACKTRACE" | head -16
  done
}
# b NAME [ENV=V...] CMD...: a model run with the time left; its key lines.
b() {
  n=$1; shift
  [ "$(left)" -lt 40 ] && { echo "skip $n"; return; }
  timeout $(( $(left) - 20 )) env "$@" > "$OUT/$n.log" 2>&1
  echo "== $n rc $? at $(left)s left"
  grep -E "prefill|decode |sessions|error|Error|load|panick" "$OUT/$n.log" | head -8
}
# bn NAME LIMIT TEST: an #[ignore]d kernel bench; its BENCH lines.
bn() {
  n=$1; lim=$2; shift 2
  [ "$(left)" -lt 25 ] && { echo "skip $n"; return; }
  l=$(left); [ "$lim" -gt $((l - 10)) ] && lim=$((l - 10))
  (cd "$R/crates/kernels"; timeout "$lim" $K --include-ignored --exact "$@" --nocapture --test-threads 1 > "$OUT/$n.log" 2>&1)
  echo "== $n rc $? at $(left)s left"; grep -E "BENCH" "$OUT/$n.log" | tail -40
}
# Everything under $OUT as one archive (the device tool returns at most 8 files).
pack() {
  cp /tmp/make*.log "$OUT/" 2>/dev/null
  (cd "$OUT" && tar czf /tmp/all.tgz . && find . -mindepth 1 -delete && mv /tmp/all.tgz "$OUT/all.tgz")
  echo "end at $(left)s left"
}
