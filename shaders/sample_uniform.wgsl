// Writes the sampler's uniform number for the Step's (seed, counter) as f32
// bits to out[out_off] (tests, reproducibility checks).

override WG: u32 = 64u;

@group(0) @binding(0) var<storage, read_write> out: array<u32>;
@group(0) @binding(2) var<uniform> step: Step;

@compute @workgroup_size(WG)
fn sample_uniform(@builtin(local_invocation_index) lid: u32) {
    sample_begin(0u);
    if (lid == 0u) {
        out[sp.out_off] = bitcast<u32>(uniform01(step.seed_lo, step.seed_hi, step.counter));
    }
}
