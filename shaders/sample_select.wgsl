// Sampling, pick step 2 (one workgroup): with u = uniform01(step seed, counter),
// a workgroup prefix sum over the blocks' kept masses Q[b] gives M = sum(Q) and
// goal = u * M; the first block whose prefix range holds the goal, then a
// second prefix sum over contiguous chunks of that block, and the invocation
// whose chunk holds the crossing walks it: the token is the first kept index
// whose cumulative kept mass exceeds the goal. Rounding that leaves no crossing
// falls back to the last kept token (of that block, or overall). A row whose
// max is not finite (a NaN or +inf logit, or every logit -inf) gives NON_FINITE.

override WG: u32 = 256u;

@group(0) @binding(0) var<storage, read> ev: array<f32>;
@group(0) @binding(1) var<storage, read> part: array<u32>;
@group(0) @binding(2) var<storage, read> blk: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<u32>;
@group(0) @binding(5) var<uniform> step: Step;

var<workgroup> scan: array<f32, WG>;
var<workgroup> found: atomic<u32>;
var<workgroup> last_all: atomic<u32>;
var<workgroup> base_sh: f32;

fn kept(e: f32, tau: u32) -> bool {
    return bitcast<u32>(e) >= tau && e > 0.0;
}

// Inclusive prefix sum of v over the workgroup (Hillis-Steele); uniform control flow.
fn wg_scan(v: f32, lid: u32) -> f32 {
    scan[lid] = v;
    workgroupBarrier();
    for (var off = 1u; off < WG; off <<= 1u) {
        var a = 0.0;
        if (lid >= off) {
            a = scan[lid - off];
        }
        workgroupBarrier();
        scan[lid] += a;
        workgroupBarrier();
    }
    return scan[lid];
}

@compute @workgroup_size(WG)
fn sample_select(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    sample_begin(wid.y);
    let best = reduce_partials(lid);
    let tau = blk[blk_base + 2u * sp.nblocks];
    var u = uniform01(row_seed.x, row_seed.y, row_seed.z);
    if (shape.seed_from_step != 0u) {
        u = uniform01(step.seed_lo, step.seed_hi, step.counter);
    }
    if (lid == 0u) {
        atomicStore(&found, NO_INDEX);
        atomicStore(&last_all, 0u);
    }
    // Blocks: one per invocation (the host keeps nblocks <= WG).
    var q = 0.0;
    if (lid < sp.nblocks) {
        q = bitcast<f32>(blk[blk_base + 2u * lid]);
        let l = blk[blk_base + 2u * lid + 1u];
        if (l != NO_INDEX) {
            atomicMax(&last_all, l + 1u);
        }
    }
    let incl_b = wg_scan(q, lid);
    let total = scan[WG - 1u];
    var excl_b = 0.0;
    if (lid > 0u) {
        excl_b = scan[lid - 1u];
    }
    let goal = u * total;
    if (lid < sp.nblocks && excl_b <= goal && goal < incl_b) {
        atomicMin(&found, lid);
    }
    workgroupBarrier();
    let fb = atomicLoad(&found);
    if (lid == fb) {
        base_sh = excl_b;
    }
    workgroupBarrier();
    let base = base_sh;
    // The found block's elements in contiguous chunks (empty if none was found).
    var start = 0u;
    var end = 0u;
    if (fb != NO_INDEX) {
        start = fb * sp.block;
        end = min(start + sp.block, sp.vocab);
    }
    let chunk = (end - start + WG - 1u) / WG;
    let c0 = min(start + lid * chunk, end);
    let c1 = min(c0 + chunk, end);
    var s = 0.0;
    for (var i = c0; i < c1; i++) {
        let e = ev[ev_base + i];
        if (kept(e, tau)) {
            s += e;
        }
    }
    let incl = base + wg_scan(s, lid);
    var excl = base;
    if (lid > 0u) {
        excl = base + scan[lid - 1u];
    }
    var cand = NO_INDEX;
    if (excl <= goal && goal < incl) {
        var c = excl;
        for (var i = c0; i < c1; i++) {
            let e = ev[ev_base + i];
            if (kept(e, tau)) {
                c += e;
                cand = i;
                if (c > goal) {
                    break;
                }
            }
        }
    }
    let first = u32(-wg_max(-f32(cand), lid));
    if (lid == 0u) {
        var tok = first;
        if (tok == NO_INDEX && fb != NO_INDEX) {
            tok = blk[blk_base + 2u * fb + 1u];
        }
        let la = atomicLoad(&last_all);
        if (tok == NO_INDEX && la > 0u) {
            tok = la - 1u;
        }
        if (tok == NO_INDEX) {
            tok = best.i;
        }
        out[sp.out_off] = select(min(tok, sp.vocab - 1u), NON_FINITE, !is_finite(best.v));
    }
}
