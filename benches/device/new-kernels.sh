#!/bin/bash
# One device call: hardware tests of the kernels that are off by default
# until they pass there (each suite in its own process, the model test
# binaries of `.gpu/model-tests.tar.xz` with them switched on), then their
# kernel benches, then 9B prefill with the f16-scratch GEMM off and on.
# Carry [".gl", ".gpu", ".gpub"]; BUDGET = seconds the command may take;
# NOMAKE=1 skips the model folders (and the model runs).
source benches/device/common.sh
[ -n "$NOMAKE" ] || makem
mkdir -p "$OUT/k" /tmp/gt
t f16 matmul_coop_f16:: --test-threads 4
t cfast matmul_coop_fast:: --test-threads 4
t moe moe_coop:: --test-threads 4
t int4 matmul_int4:: --test-threads 4
t skinny matmul_coop_skinny:: --skip skinny_fast_and_plain --test-threads 4
t shv shaders_validate:: --test-threads 4
if [ -f .gpu/model-tests.tar.xz ]; then
  tar -C /tmp/gt -xJf .gpu/model-tests.tar.xz
  (QWGPU_COOP_F16=1 QWGPU_COOP_Q4=1 QWGPU_GPU_TEST_TIMEOUT=120 timeout 180 bash /tmp/gt/run.sh "$R" "$OUT/gt" > "$OUT/gt.log" 2>&1
   echo "model rc $?" >> "$OUT/k/rc.txt") &
fi
wait
echo "tests done at $(left)s left:"; tests_summary
grep -E "exit" "$OUT/gt/summary.txt" 2>/dev/null
bn f16b 110 matmul_coop_f16::coop_f16_speed
bn q4moe 60 moe_coop::grouped_coop_q4_bench_35b_a3b
bn q4d 45 matmul_int4::int4_dense_gemm_bench_27b
if [ -z "$NOMAKE" ]; then
  waitm MADE9
  for f in 0 1; do b pf9_$f QWGPU_COOP_F16=$f $Q bench --model $M/hf-9B --prefill 4096 --decode 8 --prompt-len 16; done
  for f in 1 0; do b ff9_$f QWGPU_COOP_F16=$f $Q bench --model $M/hf-9B-fp8 --prefill 4096 --decode 8 --prompt-len 16; done
fi
pack
