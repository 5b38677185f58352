//! Arbitrary bytes through the safetensors header, shard index and config parsers.
//! Any panic (including debug-build overflow) is a finding.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    qwgpu_checkpoint::fuzzing::fuzz_parse(data);
});
