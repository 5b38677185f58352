#!/usr/bin/env bash
# Chromium's WebGPU on the GPU machine, beside native qwgpu (issue 20, item 5).
# Runs in the project root there (a device call); the payload comes from
# benches/webgpu/pack.sh as .webgpu/partN/ folders, one or more per call.
#
# usage: bash benches/webgpu/run.sh STEP...   (steps run in the order given)
#   stash    copy the carried .webgpu/part*/ pieces to /tmp/qwgpu-webgpu/parts
#            (kept while the machine stays warm, so parts can come in
#            back-to-back calls)
#   model    make the random-weight 0.8B (benches/make_models.py, torch on
#            the GPU) in /dev/shm unless it is there
#   browser  unpack the payload, probe Chromium flag sets for the WebGPU
#            adapter they give (vendor/architecture/description), then time
#            the bundled tiny model and, on a hardware adapter, the 0.8B
#   native   `qwgpu bench` (carried as .gpu/qwgpu) on the same folders
#   kernels  the browser kernel tests (crates/web/tests/browser_kernels.rs,
#            carried as .webgpu/tests/kernels.tar.xz) through
#            wasm-bindgen-test-runner and chromedriver, on the unpacked
#            Chromium with the flag set `browser` chose
#   local    as `browser`, but with this machine's /usr/lib/chromium and the
#            wasm bundle in web/pkg or $WEBGPU_SITE (a check where no GPU is)
# Writes under $OUT (or /tmp/qwgpu-webgpu/out): summary.txt, results.jsonl,
# native.txt, kernels.txt, logs.tgz. Each step has its own time limit.
#
# Tunables (environment): WEBGPU_PROMPTS (default 128,512), WEBGPU_DECODE (64),
# WEBGPU_REPS (2), WEBGPU_BENCH_S (the timing page's limit, all models, 240).
set -u
root="$(pwd)"
out="${OUT:-/tmp/qwgpu-webgpu/out}"
mkdir -p "$out"
store=/tmp/qwgpu-webgpu
parts="$store/parts"
x="$store/x"
model_root=/dev/shm/qwgpu-webgpu
big="$model_root/hf-0.8B"
tiny="$root/tests/fixtures/dense-bf16-text"
logs="$store/logs"
mkdir -p "$parts" "$logs"
summary="$out/summary.txt"
prompts="${WEBGPU_PROMPTS:-128,512}"
decode="${WEBGPU_DECODE:-64}"
reps="${WEBGPU_REPS:-2}"
bench_s="${WEBGPU_BENCH_S:-240}"
started=$(date +%s)

say() { echo "[$(($(date +%s) - started)) s] $*" | tee -a "$summary"; }

setup_gpu() {
  if ls .gl/*.deb > /dev/null 2>&1; then
    for f in .gl/*.deb; do dpkg -x "$f" /; done
    ldconfig
  fi
  local icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
  if [ -f "$icd" ]; then
    export VK_DRIVER_FILES="$icd"
    export VK_ICD_FILENAMES="$icd"
  fi
  export XDG_RUNTIME_DIR=/tmp/xdg-webgpu
  mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"
}

step_stash() {
  local n=0
  for p in .webgpu/part*/payload.tar.xz.*; do
    [ -e "$p" ] || continue
    cp "$p" "$parts/" && n=$((n + 1))
    cp "$(dirname "$p")/SHA256" "$parts/SHA256"
  done
  say "stash: $n piece(s) added; held now: $(cd "$parts" && ls payload.tar.xz.* 2>/dev/null | tr '\n' ' ')"
}

step_model() {
  if [ -f "$big/.webgpu-complete" ]; then
    say "model: $big already there"
    return 0
  fi
  mkdir -p "$model_root/tok"
  cp "$tiny/tokenizer.json" "$tiny/tokenizer_config.json" "$model_root/tok/"
  say "model: making the random-weight 0.8B (make_models.py)"
  PYTHONUNBUFFERED=1 timeout 300 python3 benches/make_models.py hf 0.8B "$model_root" "$model_root/tok" \
    > "$logs/make_model.log" 2>&1
  local rc=$?
  say "model: exit $rc; $(grep '^MODEL' "$logs/make_model.log" | cut -c1-200)"
  if [ "$rc" = 0 ]; then touch "$big/.webgpu-complete"; else tail -5 "$logs/make_model.log" | tee -a "$summary"; fi
}

unpack() {
  if [ -x "$x/chromium/chromium-headless-shell" ] || [ -x "$x/chromium/chromium" ]; then
    return 0
  fi
  local want have
  want="$(cat "$parts/SHA256" 2>/dev/null)"
  have="$(cat "$parts"/payload.tar.xz.* 2>/dev/null | sha256sum | cut -d' ' -f1)"
  if [ -z "$want" ] || [ "$want" != "$have" ]; then
    say "browser: payload incomplete (have $(ls "$parts" | tr '\n' ' '); checksum $have, want $want)"
    return 1
  fi
  rm -rf "$x" && mkdir -p "$x"
  cat "$parts"/payload.tar.xz.* | xz -d | tar -C "$x" -xf - || return 1
  say "browser: unpacked $(cat "$x/PAYLOAD" | tr '\n' ';')"
}

# The browser binary and how it takes --headless.
find_browser() {
  local dir="$1"
  if [ -x "$dir/chromium-headless-shell" ]; then
    browser="$dir/chromium-headless-shell"
    headless=""
  elif [ -x "$dir/chromium" ]; then
    browser="$dir/chromium"
    headless="--headless=new"
  else
    return 1
  fi
}

server_pid=""
start_server() {
  local site="$1" port="$2"
  local models=(--model "tiny=$tiny")
  [ -f "$big/.webgpu-complete" ] && models+=(--model "0.8B=$big")
  rm -f "$store/results.jsonl"
  python3 benches/webgpu/serve.py "$site" --port "$port" --results "$store/results.jsonl" "${models[@]}" \
    > "$logs/serve.log" 2>&1 &
  server_pid=$!
  for _ in $(seq 50); do
    (exec 3<> "/dev/tcp/127.0.0.1/$port") 2> /dev/null && return 0
    sleep 0.1
  done
  say "browser: the local server did not start: $(tail -3 "$logs/serve.log")"
  return 1
}

# One page run: browser with `flags` on `query`, until the page posts `done`
# or `limit` seconds pass; its result lines go to $store/run-$tag.jsonl.
page_run() {
  local tag="$1" flags="$2" query="$3" limit="$4"
  : > "$store/results.jsonl"
  local prof="$store/profile-$tag"
  rm -rf "$prof"
  # shellcheck disable=SC2086
  LD_LIBRARY_PATH="$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
    timeout -k 5 "$limit" "$browser" $headless --no-sandbox --disable-gpu-sandbox --disable-dev-shm-usage \
    --no-first-run --user-data-dir="$prof" --enable-unsafe-webgpu --ignore-gpu-blocklist \
    --enable-logging=stderr --v=0 $flags "http://127.0.0.1:$port/bench.html?$query" \
    > "$logs/chromium-$tag.log" 2>&1 &
  local pid=$!
  local t=0
  while kill -0 "$pid" 2> /dev/null; do
    grep -q '"kind": "done"' "$store/results.jsonl" && break
    sleep 1
    t=$((t + 1))
  done
  kill "$pid" 2> /dev/null
  wait "$pid" 2> /dev/null
  cp "$store/results.jsonl" "$store/run-$tag.jsonl"
  grep -q '"kind": "done"' "$store/run-$tag.jsonl" || say "  $tag: no 'done' from the page within ${limit} s (exit or timeout after ${t} s)"
}

adapter_of() {
  python3 - "$1" << 'EOF'
import json, sys
for l in open(sys.argv[1]):
    r = json.loads(l)
    if r["kind"] == "adapter":
        if "error" in r:
            print("none: " + r["error"])
        else:
            print(f'vendor={r.get("vendor")!r} architecture={r.get("architecture")!r} device={r.get("device")!r} '
                  f'description={r.get("description")!r} fallback={r.get("fallback")} '
                  f'f16={"shader-f16" in r.get("features", [])} maxBuffer={r.get("limits", {}).get("maxBufferSize")}')
        break
else:
    print("none: the page posted no adapter")
EOF
}

# The flag sets tried, in order (the issue's first).
FLAGSETS=(
  "--use-angle=vulkan --enable-features=Vulkan"
  "--use-angle=vulkan --enable-features=Vulkan,VulkanFromANGLE,DefaultANGLEVulkan --use-vulkan=native"
  "--enable-features=Vulkan --use-vulkan=native --disable-vulkan-surface"
  "--use-gl=angle --use-angle=vulkan --enable-features=Vulkan,VulkanFromANGLE --disable-vulkan-fallback-to-gl-for-testing"
  "--enable-features=Vulkan --use-webgpu-adapter=default --enable-dawn-features=allow_unsafe_apis"
  "--enable-features=Vulkan --use-angle=swiftshader --disable-gpu-compositing"
)

browser_steps() {
  local site="$1" dir="$2"
  find_browser "$dir" || { say "browser: no Chromium in $dir"; return 1; }
  libdir="$3"
  say "browser: $("$browser" --version 2> /dev/null | head -1) at $browser"
  port=8391
  start_server "$site" "$port" || return 1
  local chosen="" i=0 hw=""
  for flags in "${FLAGSETS[@]}"; do
    i=$((i + 1))
    page_run "probe$i" "$flags" "probe" 30
    local a
    a="$(adapter_of "$store/run-probe$i.jsonl")"
    say "probe $i [$flags]: $a"
    [ -z "$chosen" ] && [[ "$a" != none* ]] && chosen="$flags"
    if [[ "$a" != none* ]] && ! echo "$a" | grep -qiE "swiftshader|llvmpipe|lavapipe|fallback=True"; then
      chosen="$flags"
      hw=1
      break
    fi
  done
  printf '%s\n' "$chosen" > "$store/chosen-flags"
  if [ -z "$chosen" ]; then
    say "browser: no flag set gave a WebGPU adapter"
  else
    local models="tiny"
    if [ -n "$hw" ] && [ -f "$big/.webgpu-complete" ]; then models="tiny,0.8B"; fi
    [ -z "$hw" ] && say "browser: no hardware adapter; timing the tiny model on the software one only"
    say "browser: timing $models with [$chosen] (prompts $prompts, decode $decode, reps $reps)"
    page_run bench "$chosen" "models=$models&prompts=$prompts&decode=$decode&reps=$reps" "$bench_s"
    cat "$store/run-bench.jsonl" >> "$out/results.jsonl"
    python3 - "$store/run-bench.jsonl" << 'EOF' | tee -a "$summary"
import json, sys
for l in open(sys.argv[1]):
    r = json.loads(l)
    k = r["kind"]
    if k == "loaded":
        print(f'  {r["model"]}: loaded in {r["load_s"]:.1f} s ({r["bytes"]} bytes) on {r["engine_adapter"]!r}')
    elif k == "timing":
        print(f'  {r["model"]} rep {r["rep"]}: prompt {r["prompt_tokens"]} tokens prefill {r["prefill_tok_s"]:.1f} tok/s, '
              f'decode {r["decode_tok_s"]:.1f} tok/s ({r["generated"]} tokens)')
    elif k == "error":
        print(f'  error ({r.get("model", "page")}): {r["error"]}')
EOF
  fi
  for f in "$store"/run-probe*.jsonl; do cat "$f" >> "$out/results.jsonl"; done
  # What the GPU process said about Vulkan/Dawn/WebGPU, per probe.
  for f in "$logs"/chromium-probe*.log; do
    echo "--- $(basename "$f"): $(grep -ciE 'vulkan|dawn|webgpu|gpu_init|gpu process' "$f") lines on vulkan/dawn/webgpu/gpu; first ones:" >> "$summary"
    grep -iE 'vulkan|dawn|webgpu|gpu_init|gpu process' "$f" | head -8 | cut -c1-300 >> "$summary"
  done
  kill "$server_pid" 2> /dev/null
}

# The site the payload carries gets the tree's page (edits need no re-pack).
step_browser() {
  unpack || return 1
  cp benches/webgpu/bench.html benches/webgpu/bench.js "$x/site/"
  browser_steps "$x/site" "$x/chromium" "$x/lib:$x/chromium"
}

step_local() {
  local site="${WEBGPU_SITE:-$root/web}"
  [ -f "$site/pkg/qwgpu_web_bg.wasm" ] || { say "local: no $site/pkg (cargo xtask web --release, or WEBGPU_SITE)"; return 1; }
  local s="$store/local-site"
  rm -rf "$s" && mkdir -p "$s" && cp -r "$site/pkg" "$s/"
  cp benches/webgpu/bench.html benches/webgpu/bench.js "$s/"
  browser_steps "$s" "${WEBGPU_CHROMIUM_DIR:-/usr/lib/chromium}" "${WEBGPU_LIBDIR:-}"
}

step_kernels() {
  local k="$store/kernels"
  if [ -f .webgpu/tests/kernels.tar.xz ]; then
    rm -rf "$k" && mkdir -p "$k" && xz -dc .webgpu/tests/kernels.tar.xz | tar -C "$k" -xf - || return 1
  fi
  [ -f "$k/browser_kernels.wasm" ] || { say "kernels: no .webgpu/tests/kernels.tar.xz carried"; return 1; }
  unpack || return 1
  find_browser "$x/chromium" || { say "kernels: no unpacked Chromium"; return 1; }
  local flags
  flags="$(cat "$store/chosen-flags" 2> /dev/null)"
  [ -n "$flags" ] || flags="${FLAGSETS[0]}"
  python3 - "$browser" "$flags" > "$k/webdriver.json" << 'EOF'
import json, sys
args = ["--no-sandbox", "--disable-gpu-sandbox", "--disable-dev-shm-usage", "--enable-unsafe-webgpu",
        "--ignore-gpu-blocklist"] + sys.argv[2].split()
if not sys.argv[1].endswith("headless-shell"):
    args.insert(0, "--headless=new")
print(json.dumps({"goog:chromeOptions": {"binary": sys.argv[1], "args": args}}))
EOF
  say "kernels: browser_kernels in $browser with [$flags]"
  (cd "$k" && LD_LIBRARY_PATH="$x/lib:$x/chromium" CHROMEDRIVER="$k/chromedriver" WASM_BINDGEN_TEST_TIMEOUT=400 \
    timeout -k 5 "${WEBGPU_KERNELS_S:-480}" ./wasm-bindgen-test-runner browser_kernels.wasm --nocapture) > "$out/kernels.txt" 2>&1
  say "kernels: exit $?; $(grep -E 'test result|passed|failed' "$out/kernels.txt" | tail -3 | tr '\n' ' ')"
  grep -F '[browser/' "$out/kernels.txt" | head -3 | tee -a "$summary"
}

step_native() {
  local bin="${QWGPU_BIN:-.gpu/qwgpu}"
  [ -x "$bin" ] || { say "native: no $bin"; return 1; }
  : > "$out/native.txt"
  local m
  for m in "$tiny" "$big"; do
    [ -f "$m/config.json" ] && { [ "$m" = "$tiny" ] || [ -f "$m/.webgpu-complete" ]; } || continue
    say "native: $bin bench --model $m --decode-at $prompts --decode $decode"
    timeout 120 "$bin" bench --model "$m" --decode-at "$prompts" --decode "$decode" >> "$out/native.txt" 2>&1
    say "native: exit $?"
  done
  tee -a "$summary" < "$out/native.txt" > /dev/null
}

setup_gpu
for s in "$@"; do
  case "$s" in
    stash) step_stash ;;
    model) step_model ;;
    browser) step_browser ;;
    native) step_native ;;
    kernels) step_kernels ;;
    local) step_local ;;
    *) say "unknown step $s (stash model browser native kernels local)" ;;
  esac
done
tar -C "$store" -czf "$out/logs.tgz" logs $(cd "$store" && ls run-*.jsonl 2> /dev/null) 2> /dev/null
say "done: $* in $(($(date +%s) - started)) s; files in $out: $(ls "$out" | tr '\n' ' ')"
