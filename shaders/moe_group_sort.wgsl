// MoE grouping: a counting sort of the (token, slot) pairs by expert, so the
// grouped GEMM (moe_group_gemm.wgsl) reads each expert's weights once per 64
// pairs instead of once per pair.
//
// One workgroup of 256 threads does it all (a few thousand pairs per prefill
// chunk; one launch, no global atomics, deterministic):
//   1. counts per expert (workgroup atomics),
//   2. exclusive scan of the counts and of the tile counts ceil(count / 64),
//      written as the tile table: tile g = (first slot in perm, pairs <= 64,
//      expert, 0); word 0 = number of tiles,
//   3. scatter of the pair indices to perm, 256 pairs per round, each pair's
//      rank = earlier pairs of the round with the same expert, so within an
//      expert the pairs keep increasing pair order.
// Ids >= experts are left out (like matmul_indexed, their rows are not written).
//
// Scratch layout (u32 words): [0] tiles, [1..4) 0, [4, 4 + pairs) perm,
// [tiles_off + 4g, + 4) tile g.

struct GroupParams {
    pairs: u32,
    experts: u32,
    ids_off: u32,
    tiles_off: u32,
}

@group(0) @binding(0) var<storage, read> gids: array<u32>;
@group(0) @binding(1) var<storage, read_write> gout: array<u32>;
@group(0) @binding(2) var<uniform> gp: GroupParams;

const GWG: u32 = 256u;
// Pairs per tile-table entry: 64 (the scalar grouped GEMM's tile) or 128
// (the tensor-core GEMM's; the scalar one then takes each in two halves).
override GTILE: u32 = 64u;
const NONE: u32 = 0xffffffffu;

var<workgroup> g_cnt: array<atomic<u32>, 1024>;
var<workgroup> g_pos: array<u32, 1024>;
var<workgroup> g_scan_p: array<u32, 256>;
var<workgroup> g_scan_t: array<u32, 256>;
var<workgroup> g_chunk: array<u32, 256>;

@compute @workgroup_size(256)
fn moe_group(@builtin(local_invocation_index) lid: u32) {
    for (var e = lid; e < gp.experts; e += GWG) {
        atomicStore(&g_cnt[e], 0u);
    }
    workgroupBarrier();
    for (var q = lid; q < gp.pairs; q += GWG) {
        let e = gids[gp.ids_off + q];
        if (e < gp.experts) {
            atomicAdd(&g_cnt[e], 1u);
        }
    }
    workgroupBarrier();
    // Each thread owns a contiguous range of experts.
    let per = (gp.experts + GWG - 1u) / GWG;
    let e0 = min(lid * per, gp.experts);
    let e1 = min(e0 + per, gp.experts);
    var sp = 0u;
    var st = 0u;
    for (var e = e0; e < e1; e++) {
        let c = atomicLoad(&g_cnt[e]);
        sp += c;
        st += (c + GTILE - 1u) / GTILE;
    }
    g_scan_p[lid] = sp;
    g_scan_t[lid] = st;
    workgroupBarrier();
    // Inclusive scan of the per-thread sums (Hillis-Steele, 8 rounds).
    for (var d = 1u; d < GWG; d <<= 1u) {
        var a = 0u;
        var b = 0u;
        if (lid >= d) {
            a = g_scan_p[lid - d];
            b = g_scan_t[lid - d];
        }
        workgroupBarrier();
        g_scan_p[lid] += a;
        g_scan_t[lid] += b;
        workgroupBarrier();
    }
    var op = g_scan_p[lid] - sp;
    var ot = g_scan_t[lid] - st;
    for (var e = e0; e < e1; e++) {
        let c = atomicLoad(&g_cnt[e]);
        g_pos[e] = op;
        for (var j = 0u; j * GTILE < c; j++) {
            let w = gp.tiles_off + 4u * (ot + j);
            gout[w] = op + GTILE * j;
            gout[w + 1u] = min(GTILE, c - GTILE * j);
            gout[w + 2u] = e;
            gout[w + 3u] = 0u;
        }
        op += c;
        ot += (c + GTILE - 1u) / GTILE;
    }
    if (lid == GWG - 1u) {
        gout[0] = g_scan_t[GWG - 1u];
        gout[1] = g_scan_p[GWG - 1u];
        gout[2] = 0u;
        gout[3] = 0u;
    }
    workgroupBarrier();
    for (var c0 = 0u; c0 < gp.pairs; c0 += GWG) {
        let q = c0 + lid;
        var e = NONE;
        if (q < gp.pairs) {
            e = gids[gp.ids_off + q];
            if (e >= gp.experts) {
                e = NONE;
            }
        }
        g_chunk[lid] = e;
        workgroupBarrier();
        var rank = 0u;
        var last = true;
        if (e != NONE) {
            for (var j = 0u; j < GWG; j++) {
                if (g_chunk[j] == e) {
                    if (j < lid) {
                        rank++;
                    } else if (j > lid) {
                        last = false;
                    }
                }
            }
            gout[4u + g_pos[e] + rank] = q;
        }
        workgroupBarrier();
        if (e != NONE && last) {
            g_pos[e] += rank + 1u;
        }
        workgroupBarrier();
    }
}
