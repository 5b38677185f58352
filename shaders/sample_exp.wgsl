// Sampling, step 2 (one workgroup per block): every workgroup reduces the
// partials to the row max m (identically), then writes the unnormalised
// probabilities of its block:
//   e[i] = exp((logit[i] - m) * inv_t), 0 for NaN/-inf logits, 0 below the
//   smallest normal f32 (GPUs may flush denormals) and below the row's min_p
//   (e = 1 at the max), 0 everywhere when m is not
//   finite (the select step then writes NON_FINITE), 0 for the padding up to
//   a multiple of 4.

override WG: u32 = 256u;

@group(0) @binding(0) var<storage, read> logits: array<f32>;
@group(0) @binding(1) var<storage, read> part: array<u32>;
@group(0) @binding(2) var<storage, read_write> ev: array<f32>;

@compute @workgroup_size(WG)
fn sample_exp(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    sample_begin(wid.y);
    let m = reduce_partials(lid).v;
    let ok = is_finite(m);
    let e_floor = max(1.17549435e-38, row_min_p);
    let start = wid.x * sp.block;
    let n_pad = (sp.vocab + 3u) & ~3u;
    let end = min(start + sp.block, n_pad);
    for (var i0 = start + lid; i0 < end; i0 += BATCH * WG) {
        // All loads of the batch first, then the stores.
        var l: array<f32, BATCH>;
        for (var k = 0u; k < BATCH; k++) {
            let i = min(i0 + k * WG, sp.vocab - 1u);
            l[k] = logits[sp.logits_off + i];
        }
        for (var k = 0u; k < BATCH; k++) {
            let i = i0 + k * WG;
            var e = 0.0;
            let x = l[k];
            if (i < sp.vocab && ok && !is_nan(x) && x > bitcast<f32>(NEG_INF_BITS)) {
                e = exp((x - m) * sp.inv_t);
                if (!(e >= e_floor)) {
                    e = 0.0;
                }
            }
            if (i < end) {
                ev[ev_base + i] = e;
            }
        }
    }
}
