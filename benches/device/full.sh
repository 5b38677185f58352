#!/bin/bash
# One complete `cargo xtask bench` run (benches/README.md), started detached
# so that it outlives this call; collect.sh on the still-warm machine (next
# call within its idle window) waits for the rest. Carry [".gl", ".peers",
# ".gpub"]. WAIT = seconds this call waits (default 575).
#
# GATE_TESTS / GATE_ENV (optional): a kernel test filter run while the
# checkpoints are made, and the environment (`NAME=VALUE ...`) every qwgpu
# run of the bench gets if those tests pass on this GPU (a wrapper holds the
# qwgpu runs until they are decided): a kernel that is off by default can
# be measured in the run once it has passed here; the model test binaries
# of .gpub/model-gate.tar.xz (golden_gpu and gpu_model: README) or of a
# carried .gpu/model-tests.tar.xz run with GATE_ENV before the bench's qwgpu
# runs (their log in res.tgz). Extra bench options:
# BENCH_ARGS (default: every row of issue 17, CUDA peers included). A
# carried .gpub/llama-batched-bench-vk.xz (benches/build_vk_batched_bench.sh)
# is the Vulkan llama-batched-bench peer.
S=$(date +%s); el() { echo $(( $(date +%s) - S )); }
for f in .gl/*.deb; do dpkg -x "$f" / >/dev/null; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json XDG_RUNTIME_DIR=/tmp/x
mkdir -p /tmp/x; chmod 700 /tmp/x
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
# The device tool re-syncs the checkout at every call: the run works in a copy.
rm -rf /tmp/repo && cp -a . /tmp/repo && cd /tmp/repo
python3 -m pip install -q --no-index --no-deps --target /tmp/site .gpub/whl/*.whl && export PYTHONPATH=/tmp/site
mkdir -p /tmp/b /tmp/res && tar -C /tmp/b -xJf .gpub/bin.tar.xz && mv /tmp/b/qwgpu /tmp/b/qwgpu.bin
cat > /tmp/b/qwgpu <<'W'
#!/bin/bash
case "$*" in *--copy-bandwidth*) ;; *) while [ ! -f /tmp/gate.env ]; do sleep 1; done; . /tmp/gate.env ;; esac
exec /tmp/b/qwgpu.bin "$@"
W
chmod +x /tmp/b/qwgpu
[ -z "$GATE_TESTS" ] && : > /tmp/gate.env
# The kernel microbenches run last; their sweeps bounded.
export SKINNY_BENCH_FORMATS=BF16,FP8-block128 SKINNY_BENCH_T=2,4,8,16,32,64
# BENCH_ARGS as shell words (quotes group, e.g. --llama-args "-p 4096 -n 128").
# The default compares batch-1 decode with the committed run (benches/results.json).
eval "args=(${BENCH_ARGS:---cuda --sizes 0.8B,9B,9B-FP8,35B-A3B --baseline benches/results.json})"
# The Vulkan llama-batched-bench built here (benches/build_vk_batched_bench.sh).
if [ -f .gpub/llama-batched-bench-vk.xz ]; then
  xz -dc .gpub/llama-batched-bench-vk.xz > /tmp/b/llama-batched-bench-vk && chmod +x /tmp/b/llama-batched-bench-vk
  args+=(--vk-batched-bench /tmp/b/llama-batched-bench-vk)
fi
setsid nohup /tmp/b/xtask bench --qwgpu /tmp/b/qwgpu --kernel-tests /tmp/b/tests --peers /tmp/repo/.peers \
  --out /tmp/qwgpu-bench/out "${args[@]}" > /tmp/qwgpu-bench.log 2>&1 &
if [ -n "$GATE_TESTS" ]; then
  (while ! grep -q "make checkpoints \.\.\." /tmp/qwgpu-bench/out/bench.log 2>/dev/null; do sleep 1; done
   # The model test binaries (carried .gpu/model-tests.tar.xz) with GATE_ENV,
   # beside the gate's kernel tests and before any qwgpu run of the bench
   # (evidence for turning the kernel on by default; the gate itself is the
   # kernel tests).
   mt=/tmp/repo/.gpub/model-gate.tar.xz; [ -f $mt ] || mt=/tmp/repo/.gpu/model-tests.tar.xz
   if [ -f $mt ]; then
     mkdir -p /tmp/gt && tar -C /tmp/gt -xJf $mt
     # shellcheck disable=SC2086
     (env $GATE_ENV QWGPU_GPU_TEST_TIMEOUT=100 timeout 130 bash /tmp/gt/run.sh /tmp/repo /tmp/res/model-tests \
        > /tmp/res/model-tests.log 2>&1
      echo "model tests rc $? with $GATE_ENV" >> /tmp/res/model-tests.log) &
   fi
   cd /tmp/repo/crates/kernels; s=$(date +%s)
   # shellcheck disable=SC2086
   QWGPU_REQUIRE_HW=1 QWGPU_FIXTURES_DIR=/tmp/repo/tests/fixtures timeout 110 /tmp/b/tests/kernels $GATE_TESTS \
     --test-threads 8 > /tmp/res/gate-tests.log 2>&1
   rc=$?; echo "gate tests rc $rc in $(( $(date +%s) - s )) s" >> /tmp/res/gate-tests.log
   wait
   if [ $rc -eq 0 ] && grep -q "test result: ok" /tmp/res/gate-tests.log; then
     for v in $GATE_ENV; do echo "export $v"; done > /tmp/gate.env
   else
     : > /tmp/gate.env
   fi) &
fi
bash benches/device/collect.sh
