#!/usr/bin/env bash
# Packs what Chromium's WebGPU bench needs on the GPU machine (which has no
# Chromium, no cargo and no network) into xz parts small enough for one device
# call each: Debian 12's Chromium at this machine's installed version (by
# default its headless shell, `chromium-headless-shell`, fetched with
# `apt-get download`, plus the ICU data, V8 snapshots and bundled Vulkan
# loader it shares with `chromium`; `--browser full` takes the whole browser
# instead, about 40 MiB more), every shared library they and the NSS modules
# Chromium loads need apart from glibc, libstdc++ and libgcc (the GPU
# machine's are newer), and the release wasm bundle of `qwgpu-web`
# (wasm-bindgen output, `pkg/`). The page and scripts travel with the tree
# (benches/webgpu/).
#
# usage (from the project root):
#   bash benches/webgpu/pack.sh [--no-build] [--browser shell|full] [--small-mib S] [--part-mib N]
#   bash benches/webgpu/pack.sh --resplit [--small-mib S] [--part-mib N]
# writes .webgpu/part1/ (the first S MiB, default 28: it travels beside
# .gpu/qwgpu), .webgpu/part2/, ... (N MiB each, default 48), git-ignored, one
# piece each, and partN/SHA256 (the whole stream's checksum, checked before
# unpacking). --resplit only re-cuts the existing parts.
#   bash benches/webgpu/pack.sh --kernel-tests
# packs only .webgpu/tests/kernels.tar.xz for a third call (run.sh `kernels`):
# the browser kernel tests' wasm (crates/web/tests/browser_kernels.rs, test
# profile), a stripped wasm-bindgen-test-runner and chromedriver.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
build=1
small_mib=28
part_mib=48
browser=shell
resplit=0
kernel_tests=0
while [ $# -gt 0 ]; do
  case "$1" in
    --no-build) build=0 ;;
    --part-mib) part_mib="$2"; shift ;;
    --small-mib) small_mib="$2"; shift ;;
    --browser) browser="$2"; shift ;;
    --resplit) resplit=1 ;;
    --kernel-tests) kernel_tests=1 ;;
    *) echo "usage: pack.sh [--no-build] [--browser shell|full] [--small-mib S] [--part-mib N] | --resplit" >&2; exit 2 ;;
  esac
  shift
done

# Cuts $1 (the whole .xz) into .webgpu/partN/.
cut_parts() {
  local whole="$1" sum piece n=1
  sum="$(sha256sum "$whole" | cut -d' ' -f1)"
  local tmp
  tmp="$(mktemp -d /tmp/qwgpu-webgpu-cut.XXXXXX)"
  head -c "$((small_mib * 1048576))" "$whole" > "$tmp/piece.0"
  tail -c "+$((small_mib * 1048576 + 1))" "$whole" | split -b "${part_mib}M" -d -a 1 - "$tmp/piece.1"
  rm -rf .webgpu/part*
  for piece in "$tmp"/piece.*; do
    [ -s "$piece" ] || continue
    mkdir -p ".webgpu/part$n"
    mv "$piece" ".webgpu/part$n/payload.tar.xz.$n"
    echo "$sum" > ".webgpu/part$n/SHA256"
    n=$((n + 1))
  done
  rm -rf "$tmp"
  echo "pack.sh: $(stat -c %s "$whole") bytes xz in $((n - 1)) parts (sha256 $sum):"
  du -b .webgpu/part*/payload.tar.xz.* | awk '{printf "  %s %.1f MiB\n", $2, $1 / 1048576}'
}

if [ "$resplit" = 1 ]; then
  whole="$(mktemp /tmp/qwgpu-webgpu-whole.XXXXXX)"
  cat .webgpu/part*/payload.tar.xz.* > "$whole"
  [ "$(sha256sum "$whole" | cut -d' ' -f1)" = "$(cat .webgpu/part1/SHA256)" ] || { echo "pack.sh: the parts do not add up to their checksum" >&2; rm -f "$whole"; exit 1; }
  cut_parts "$whole"
  rm -f "$whole"
  exit 0
fi
chromium_dir=/usr/lib/chromium
if [ "$kernel_tests" = 1 ]; then
  CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-1}" cargo test -p qwgpu-web --target wasm32-unknown-unknown \
    --test browser_kernels --no-run --message-format=json > /tmp/qwgpu-webgpu-tests.json
  test_wasm="$(python3 -c '
import json, sys
for l in open(sys.argv[1]):
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "browser_kernels" and m.get("executable"):
        print(m["executable"])
' /tmp/qwgpu-webgpu-tests.json | tail -1)"
  rm -f /tmp/qwgpu-webgpu-tests.json
  [ -f "$test_wasm" ] || { echo "pack.sh: no browser_kernels test wasm" >&2; exit 1; }
  runner="$(command -v wasm-bindgen-test-runner || echo "$HOME/.cargo/bin/wasm-bindgen-test-runner")"
  kt="$(mktemp -d /tmp/qwgpu-webgpu-kt.XXXXXX)"
  cp "$test_wasm" "$kt/browser_kernels.wasm"
  cp "$runner" "$kt/wasm-bindgen-test-runner" && strip "$kt/wasm-bindgen-test-runner"
  cp "$chromium_dir/chromedriver" "$kt/"
  mkdir -p .webgpu/tests
  tar -C "$kt" -cf - . | xz -9 -T2 > .webgpu/tests/kernels.tar.xz
  rm -rf "$kt"
  echo "pack.sh: .webgpu/tests/kernels.tar.xz $(du -b .webgpu/tests/kernels.tar.xz | awk '{printf "%.1f MiB", $1 / 1048576}')"
  exit 0
fi
[ -x "$chromium_dir/chromium" ] || { echo "pack.sh: no $chromium_dir/chromium (apt-get install chromium)" >&2; exit 1; }
target="${CARGO_TARGET_DIR:-target}"
wasm="$target/wasm32-unknown-unknown/release/qwgpu_web.wasm"
if [ "$build" = 1 ]; then
  CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-1}" cargo build -p qwgpu-web --lib --target wasm32-unknown-unknown --release
fi
[ -f "$wasm" ] || { echo "pack.sh: no $wasm (run without --no-build)" >&2; exit 1; }

stage="$(mktemp -d /tmp/qwgpu-webgpu-pack.XXXXXX)"
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/site" "$stage/chromium" "$stage/lib"
wasm-bindgen --target web --no-typescript --out-dir "$stage/site/pkg" "$wasm"

# Chromium's files (it finds its .pak files, ICU data, V8 snapshots and
# bundled libvulkan next to the binary).
if [ "$browser" = full ]; then
  for f in "$chromium_dir"/*; do
    case "$(basename "$f")" in
      libVkLayer_khronos_validation.so | libVkICD_mock_icd.so | chromedriver | chrome_200_percent.pak | locales) ;;
      *) cp -a "$f" "$stage/chromium/" ;;
    esac
  done
  mkdir -p "$stage/chromium/locales"
  cp -a "$chromium_dir/locales/en-US.pak" "$stage/chromium/locales/"
else
  version="$(dpkg-query -W -f '${Version}' chromium)"
  mkdir -p "$stage/deb"
  (cd "$stage/deb" && apt-get download "chromium-headless-shell=$version") > /dev/null
  dpkg -x "$stage"/deb/chromium-headless-shell_*.deb "$stage/deb/x"
  cp -a "$stage"/deb/x/usr/lib/chromium/* "$stage/chromium/"
  rm -rf "$stage/deb"
  for f in icudtl.dat snapshot_blob.bin v8_context_snapshot.bin libvulkan.so.1 libvk_swiftshader.so \
    vk_swiftshader_icd.json libEGL.so libGLESv2.so; do
    cp -a "$chromium_dir/$f" "$stage/chromium/"
  done
fi

# The NSS modules Chromium dlopens (not in ldd's list).
nss_modules=""
for m in libsoftokn3.so libfreebl3.so libfreeblpriv3.so libnssckbi.so libnssdbm3.so; do
  p="/usr/lib/x86_64-linux-gnu/$m"
  if [ -e "$p" ]; then cp -L "$p" "$stage/lib/"; nss_modules="$nss_modules $p"; fi
done

# Every library the binaries need, by soname, except the base system's.
base='^(libc|libm|libdl|librt|libpthread|libresolv|libutil|libanl|libstdc\+\+|libgcc_s|ld-linux-x86-64)\.so'
# shellcheck disable=SC2086
for elf in "$stage"/chromium/chrom* "$stage"/chromium/lib*.so* $nss_modules; do
  ldd "$elf" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// {print $1, $3}'
done | sort -u | while read -r soname path; do
  if ! [[ "$soname" =~ $base ]] && [ ! -e "$stage/chromium/$soname" ]; then
    cp -L "$path" "$stage/lib/$soname"
  fi
done
echo "pack.sh: chromium $(du -sh "$stage/chromium" | cut -f1), $(ls "$stage/lib" | wc -l) libraries $(du -sh "$stage/lib" | cut -f1), wasm bundle $(du -sh "$stage/site/pkg" | cut -f1)"
{
  echo "commit $(git rev-parse --short HEAD)"
  echo "chromium $("$chromium_dir/chromium" --version 2>/dev/null || true)"
  echo "wasm $(stat -c %s "$stage/site/pkg/qwgpu_web_bg.wasm") bytes"
} > "$stage/PAYLOAD"

tar -C "$stage" -cf - PAYLOAD site chromium lib | xz -9e -T2 > "$stage/payload.tar.xz"
cut_parts "$stage/payload.tar.xz"
