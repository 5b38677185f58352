// Sampling: the threshold searches of top-k and top-p, spread over all blocks.
//
// Keys are the f32 bits of e (e >= 0, so bit order = value order, all below
// KEY_END). A search keeps an interval [lo, hi) of keys with f(lo) true and
// f(hi) false for a monotone predicate:
//   top-k: f(v) = count(key >= v) >= top_k
//   top-p: f(v) = S(v) >= top_p * M1,  S(v) = sum of e over key >= v,
//          M1 = S(tau_k) (the mass kept by top-k)
// Each pass evaluates f at R = 64 keys th_j = min(lo + j*stp, hi), stp =
// ceil((hi - lo) / 64), so five passes shrink [0, KEY_END) to hi = lo + 1 and
// lo is then the largest key where f holds: the k-th largest e, or the top-p
// threshold. One launch per pass, every workgroup counting its block: the
// first thing a pass does is finish the previous one (`decide`), identically
// in every workgroup, so no single-workgroup launch sits between passes.
// Partial sums: psum4[(slot * nblocks + block) * 16 + j / 4][j % 4]; each pass
// records its interval and M1 in sstate[4 * slot + 0, 1, 2].

const KEY_END: u32 = 0x3f800001u;
const R: u32 = 64u;
// Invocations per threshold (the workgroup is R * SLICES = 256).
const SLICES: u32 = 4u;

struct PassParams {
    // This launch's slot.
    slot: u32,
    // The previous pass's slot, whether there is one, and whether it summed mass.
    prev: u32,
    has_prev: u32,
    prev_mass: u32,
    // This pass sums mass (top-p) rather than counting tokens (top-k).
    mass: u32,
    // Start a new search at the previous search's result (first top-p pass).
    restart: u32,
    // Slot of the first top-p pass: its j = 0 sum (at lo = tau_k) is M1.
    p0: u32,
    _pad: u32,
}

var<workgroup> dsum: array<vec4<f32>, 256>;
var<workgroup> fin: array<f32, R>;
var<workgroup> dlo: atomic<u32>;
var<workgroup> dhi: atomic<u32>;

fn pass_step(lo: u32, hi: u32) -> u32 {
    return max((hi - lo + R - 1u) / R, 1u);
}

fn threshold(lo: u32, hi: u32, stp: u32, j: u32) -> u32 {
    return min(lo + j * stp, hi);
}

// Finishes the pass recorded in `slot`: sums its partials over the blocks (in
// a fixed order, so every workgroup gets the same bits), evaluates f at its
// thresholds and returns (lo, hi, M1 bits, 0) of the narrowed interval.
// Call in uniform control flow with a 256-invocation workgroup.
fn decide(slot: u32, mass: bool, lid: u32) -> vec4<u32> {
    let lo = sstate[ss_base + 4u * slot];
    let hi = sstate[ss_base + 4u * slot + 1u];
    let stp = pass_step(lo, hi);
    // 16 block groups x 16 threshold quads; coalesced vec4 loads.
    let g = lid / 16u;
    let q = lid % 16u;
    var acc = vec4<f32>(0.0);
    for (var b = g; b < sp.nblocks; b += 16u) {
        acc += psum4[ps_base + (slot * sp.nblocks + b) * 16u + q];
    }
    dsum[lid] = acc;
    workgroupBarrier();
    if (lid < 16u) {
        var t = vec4<f32>(0.0);
        for (var k = 0u; k < 16u; k++) {
            t += dsum[lid + 16u * k];
        }
        fin[4u * lid] = t.x;
        fin[4u * lid + 1u] = t.y;
        fin[4u * lid + 2u] = t.z;
        fin[4u * lid + 3u] = t.w;
        if (lid == 0u) {
            atomicStore(&dlo, lo);
            atomicStore(&dhi, hi);
        }
    }
    workgroupBarrier();
    var m1 = 0.0;
    var goal = f32(sp.top_k);
    if (mass) {
        m1 = select(bitcast<f32>(sstate[ss_base + 4u * slot + 2u]), fin[0], slot == pp.p0);
        goal = sp.top_p * m1;
    }
    // f is monotone: the largest threshold where it holds is the new lo, the
    // smallest where it fails the new hi (never the interval's ends; j = 0 is lo).
    if (lid < R) {
        let th = threshold(lo, hi, stp, lid);
        if (th > lo && th < hi) {
            if (fin[lid] >= goal) {
                atomicMax(&dlo, th);
            } else {
                atomicMin(&dhi, th);
            }
        }
    }
    workgroupBarrier();
    let r = vec4<u32>(atomicLoad(&dlo), atomicLoad(&dhi), bitcast<u32>(m1), 0u);
    workgroupBarrier();
    return r;
}
