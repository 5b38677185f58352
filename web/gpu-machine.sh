#!/usr/bin/env bash
# Chromium's WebGPU on the GPU machine's NVIDIA GPU: serves the page (built
# here with `cargo xtask web --release`) and a model folder with the carried
# xtask binary, opens it in headless Chromium with Vulkan, and prints the
# page's console (adapter, load, prefill/decode tok/s) into $OUT.
#
# Prepared here (a machine with cargo and network):
#   cargo xtask web --release && cargo build -p xtask
#   mkdir -p .chromium && (cd .chromium && apt-get download chromium chromium-common \
#       chromium-driver libgtk-3-0 ...)   # the .debs Chromium needs on that image
# then one device call with carry [".gl", ".chromium", "web/pkg", "target/debug/xtask"]:
#   bash web/gpu-machine.sh /path/to/Qwen3.5-0.8B "$OUT"
set -u
model="${1:?usage: gpu-machine.sh MODEL_DIR OUT_DIR}"
out="${2:?usage: gpu-machine.sh MODEL_DIR OUT_DIR}"
for f in .gl/*.deb .chromium/*.deb; do [ -e "$f" ] && dpkg -x "$f" /; done
ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
target/debug/xtask web --no-build --serve --port 8199 --model "$model" > "$out/server.log" 2>&1 &
server=$!
sleep 2
chrome=$(command -v chromium || echo /usr/lib/chromium/chromium)
for flags in "--use-angle=vulkan --enable-features=Vulkan" \
             "--use-angle=vulkan --enable-features=Vulkan,VulkanFromANGLE --use-vulkan=native" \
             "--enable-features=Vulkan"; do
  name=$(echo "$flags" | tr -c 'A-Za-z0-9' '_')
  # shellcheck disable=SC2086
  timeout 240 "$chrome" --headless=new --no-sandbox --disable-dev-shm-usage \
    --enable-unsafe-webgpu --ignore-gpu-blocklist $flags \
    --enable-logging=stderr --v=0 \
    "http://127.0.0.1:8199/?autoload&autosend" > "$out/chromium$name.log" 2>&1
  grep "qwgpu:" "$out/chromium$name.log" | tee "$out/result$name.txt"
done
kill "$server"
