// Sampling, step 1 (one workgroup per block of `block` logits): the block's
// max logit (NaN as +inf: see clean_logit) and the lowest index holding it -> part[2b], part[2b+1].

override WG: u32 = 256u;

@group(0) @binding(0) var<storage, read> logits: array<f32>;
@group(0) @binding(1) var<storage, read_write> part: array<u32>;

@compute @workgroup_size(WG)
fn sample_partial(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    sample_begin(wid.y);
    let blk = wid.x;
    let start = blk * sp.block;
    let end = min(start + sp.block, sp.vocab);
    var b = Best(bitcast<f32>(NEG_INF_BITS), NO_INDEX);
    // BATCH loads in flight per invocation before any is used (latency-bound otherwise).
    for (var i0 = start + lid; i0 < end; i0 += BATCH * WG) {
        var v: array<f32, BATCH>;
        for (var k = 0u; k < BATCH; k++) {
            let i = min(i0 + k * WG, end - 1u);
            v[k] = logits[sp.logits_off + i];
        }
        for (var k = 0u; k < BATCH; k++) {
            let i = i0 + k * WG;
            let x = clean_logit(v[k]);
            if (i < end && (x > b.v || b.i == NO_INDEX)) {
                b = Best(x, i);
            }
        }
    }
    let r = wg_argmax(b, lid);
    if (lid == 0u && blk < sp.nblocks) {
        part[part_base + 2u * blk] = bitcast<u32>(r.v);
        part[part_base + 2u * blk + 1u] = r.i;
    }
}
