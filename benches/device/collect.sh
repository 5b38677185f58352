#!/bin/bash
# Waits (WAIT seconds, default 575) for the run full.sh started, copying its
# results to $OUT every 10 s (what is there comes back even if the call is
# cut short): res.tgz (RESULTS.md, results.json, bench.log, the gate tests'
# log and decision), logs.tgz (every step's logs).
S=$(date +%s); el() { echo $(( $(date +%s) - S )); }
mkdir -p /tmp/res
collect() {
  cp /tmp/qwgpu-bench/out/* /tmp/res/ 2>/dev/null; cp /tmp/gate.env /tmp/res/ 2>/dev/null
  tar -C /tmp -czf "$OUT/res.tgz" res 2>/dev/null; tar -C /tmp/qwgpu-bench -czf "$OUT/logs.tgz" logs 2>/dev/null
}
while [ "$(el)" -lt "${WAIT:-575}" ]; do
  grep -q "all steps done" /tmp/qwgpu-bench/out/bench.log 2>/dev/null && break
  sleep 10; collect
done
collect
echo "gate: $(cat /tmp/gate.env 2>/dev/null)"; tail -3 /tmp/res/gate-tests.log 2>/dev/null
tail -25 /tmp/qwgpu-bench/out/bench.log
