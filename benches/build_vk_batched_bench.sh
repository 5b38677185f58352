#!/bin/bash
# Builds llama.cpp's Vulkan `llama-batched-bench` on this (Debian 12, no GPU)
# machine from the peers' payload source (the same commit and options as the
# payload's Vulkan `llama-bench`, ../shared/peers/results-2026-11-25.md
# "Builds"), and writes it xz-compressed to .gpub/llama-batched-bench-vk.xz,
# which benches/device/full.sh passes to the bench (`--vk-batched-bench`).
#
# Debian 12's glslc supports none of coopmat, coopmat2, integer-dot or bf16
# (the Vulkan backend would lose its fast matmul and FlashAttention paths):
# sid's glslc, Vulkan headers and SPIR-V headers are unpacked into $SID and
# glslc runs through sid's own ld.so. The cmake log must list every GLSL
# extension as supported; the script stops if one is not.
#
# Usage (from the checkout's root, after ../shared/peers/prepare.sh):
#     bash benches/build_vk_batched_bench.sh
# Needs cmake and ninja-build (apt-get install cmake ninja-build); ~8 min on 2 cores.
set -euo pipefail
ROOT=$PWD
W=${W:-/tmp/vk-peer}
SID=${SID:-/tmp/sid}
mkdir -p "$W" "$SID/lists/partial" "$SID/cache/archives/partial" "$SID/debs" "$SID/root"
touch "$SID/status"
echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian sid main" \
  > "$SID/sources.list"
A=(-o "Dir::Etc::SourceList=$SID/sources.list" -o Dir::Etc::SourceParts=/dev/null
   -o "Dir::State::Lists=$SID/lists" -o "Dir::Cache=$SID/cache" -o "Dir::State::status=$SID/status")
apt-get "${A[@]}" update -qq
(cd "$SID/debs" && apt-get "${A[@]}" download glslc libshaderc1 libc6 libstdc++6 libgcc-s1 libvulkan-dev spirv-headers)
for f in "$SID"/debs/*.deb; do dpkg -x "$f" "$SID/root"; done
cat > "$SID/glslc" <<EOF
#!/bin/sh
exec $SID/root/usr/lib64/ld-linux-x86-64.so.2 --library-path $SID/root/usr/lib/x86_64-linux-gnu:$SID/root/lib/x86_64-linux-gnu $SID/root/usr/bin/glslc "\$@"
EOF
chmod +x "$SID/glslc"
"$SID/glslc" --version

tar -C "$W" -xJf .peers/llama.cpp/payload.tar.xz src
cmake -S "$W/src" -B "$W/build-vk" -G Ninja -DCMAKE_BUILD_TYPE=Release -DGGML_VULKAN=ON -DGGML_NATIVE=OFF \
  -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON -DGGML_OPENMP=OFF \
  -DBUILD_SHARED_LIBS=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF \
  -DLLAMA_BUILD_APP=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_COMMIT=0c1e570 -DLLAMA_BUILD_NUMBER=0 \
  -DVulkan_INCLUDE_DIR="$SID/root/usr/include" -DVulkan_GLSLC_EXECUTABLE="$SID/glslc" \
  -DSPIRV-Headers_DIR="$SID/root/usr/share/cmake/SPIRV-Headers" \
  -DCMAKE_EXE_LINKER_FLAGS="-static-libstdc++ -static-libgcc" | tee "$W/cmake.log"
for ext in GL_KHR_cooperative_matrix GL_NV_cooperative_matrix2 GL_EXT_integer_dot_product GL_EXT_bfloat16; do
  grep -q "$ext supported by glslc" "$W/cmake.log" || { echo "glslc lacks $ext: stopping" >&2; exit 1; }
done
cmake --build "$W/build-vk" --target llama-batched-bench -j"$(nproc)"
strip "$W/build-vk/bin/llama-batched-bench"
mkdir -p "$ROOT/.gpub"
xz -9e -T0 -c "$W/build-vk/bin/llama-batched-bench" > "$ROOT/.gpub/llama-batched-bench-vk.xz"
ls -la "$ROOT/.gpub/llama-batched-bench-vk.xz"
