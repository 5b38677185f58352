#!/bin/bash
# On the machine a complete run (full.sh) just used, the next call: the whole
# kernel suite with the off-by-default tensor-core switches on (the evidence
# for making them the default), then 9B BF16 prefill 4096 at several prefill
# chunk sizes with the f16-scratch GEMM on, over the run's own folders.
# Carry [".gl", ".gpub"]; BUDGET = seconds the command may take.
source benches/device/common.sh
M=/dev/shm/qwgpu-bench
mkdir -p "$OUT/k"
# Decided by the switches, not by the tuning table.
export QWGPU_COOP_F16=1 QWGPU_COOP_Q4=1
TL=${TL:-200} t all --test-threads 8
wait
echo "tests done at $(left)s left:"; tests_summary
if [ -d $M/hf-9B ]; then
  for c in 512 1024 2048 4096; do
    b pf9_c$c $Q bench --model $M/hf-9B --prefill 4096 --decode 8 --prompt-len 16 --chunk $c
  done
  b pf9_prof $Q bench --model $M/hf-9B --prefill 4096 --decode 8 --prompt-len 16 --chunk 2048 --profile
fi
pack
