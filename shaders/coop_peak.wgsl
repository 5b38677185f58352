// Ceiling of wgpu's cooperative matrices: a plain f16 x f16 -> f32 GEMM tuned
// for that alone (no stored-format decode, no scales, no epilogue beyond a
// store), y[m][n] = sum_k x[m][k] w[n][k], every size a multiple of the tile.
// It measures what the tensor-core GEMM family can reach through WGSL on an
// adapter (the bench in crates/kernels/tests/coop_peak.rs); the library's GEMM
// is matmul_coop.wgsl.
//
// A workgroup of SG_M x SG_N subgroups computes a TM x TN tile; each subgroup
// owns FM x FN fragments of 16 x 16 (4 x 4 here: 8 fragment loads feed 16
// multiply-adds per 16-column slice). Two ways to feed the fragments:
// - peak_direct: fragments are loaded straight from the storage buffers (the
//   caches do the reuse between subgroups);
// - peak_staged: per CK-column step, x and w tiles are copied to workgroup
//   memory (rows padded to LDS halves), NBUF = 2 buffers so the next step's
//   global loads are in flight during the current step's multiply-adds and one
//   barrier per step suffices.

diagnostic(off, subgroup_uniformity);
enable f16;
enable wgpu_cooperative_matrix;

struct PeakParams {
    m: u32,
    n: u32,
    k: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: PeakParams;
@group(0) @binding(1) var<storage, read> xh: array<f16>;          // [m][k]
@group(0) @binding(2) var<storage, read> wh: array<f16>;          // [n][k]
@group(0) @binding(3) var<storage, read_write> ys: array<f32>;    // [m][n]
// The same x and w bytes, as u32 pairs of halves (coalesced staging loads).
@group(0) @binding(4) var<storage, read> xu: array<u32>;
@group(0) @binding(5) var<storage, read> wu: array<u32>;

override WG: u32 = 128u;        // SG_M * SG_N * subgroup size
override SG_M: u32 = 2u;        // subgroups along m
override SG_N: u32 = 2u;        // subgroups along n
override CK: u32 = 32u;         // columns per staged step
override LDS: u32 = 40u;        // padded row stride of staged tiles, halves
override NBUF: u32 = 2u;        // staged buffers (1 or 2)
override TM: u32 = SG_M * 64u;  // 4 fragments of 16 per subgroup
override TN: u32 = SG_N * 64u;
override STAGE_X: u32 = TM * LDS;
override STAGE_W: u32 = TN * LDS;
// Workgroup array sizes (one override each: array sizes take no expressions).
override ALL_X: u32 = NBUF * STAGE_X;
override ALL_W: u32 = NBUF * STAGE_W;
// u32 words of one step's x / w tile, and per thread.
override WX: u32 = TM * CK / 2u;
override WW: u32 = TN * CK / 2u;

var<workgroup> st_x: array<f16, ALL_X>;
var<workgroup> st_w: array<f16, ALL_W>;

@compute @workgroup_size(WG)
fn peak_direct(@builtin(subgroup_id) sg: u32,
               @builtin(workgroup_id) wid: vec3<u32>) {
    // coopStore's stride and index are bound by `let`: naga 30's SPIR-V
    // writer does not emit expressions used only inside a coopStore.
    let yn = p.n;
    let m0 = wid.y * TM + (sg % SG_M) * 64u;
    let n0 = wid.x * TN + (sg / SG_M) * 64u;
    var c00 = coop_mat16x16<f32, C>();
    var c01 = coop_mat16x16<f32, C>();
    var c02 = coop_mat16x16<f32, C>();
    var c03 = coop_mat16x16<f32, C>();
    var c10 = coop_mat16x16<f32, C>();
    var c11 = coop_mat16x16<f32, C>();
    var c12 = coop_mat16x16<f32, C>();
    var c13 = coop_mat16x16<f32, C>();
    var c20 = coop_mat16x16<f32, C>();
    var c21 = coop_mat16x16<f32, C>();
    var c22 = coop_mat16x16<f32, C>();
    var c23 = coop_mat16x16<f32, C>();
    var c30 = coop_mat16x16<f32, C>();
    var c31 = coop_mat16x16<f32, C>();
    var c32 = coop_mat16x16<f32, C>();
    var c33 = coop_mat16x16<f32, C>();
    for (var k0 = 0u; k0 < p.k; k0 += 16u) {
        let a0 = coopLoadT<coop_mat16x16<f16, A>>(&xh[(m0 + 0u) * p.k + k0], p.k);
        let a1 = coopLoadT<coop_mat16x16<f16, A>>(&xh[(m0 + 16u) * p.k + k0], p.k);
        let a2 = coopLoadT<coop_mat16x16<f16, A>>(&xh[(m0 + 32u) * p.k + k0], p.k);
        let a3 = coopLoadT<coop_mat16x16<f16, A>>(&xh[(m0 + 48u) * p.k + k0], p.k);
        let b0 = coopLoad<coop_mat16x16<f16, B>>(&wh[(n0 + 0u) * p.k + k0], p.k);
        let b1 = coopLoad<coop_mat16x16<f16, B>>(&wh[(n0 + 16u) * p.k + k0], p.k);
        let b2 = coopLoad<coop_mat16x16<f16, B>>(&wh[(n0 + 32u) * p.k + k0], p.k);
        let b3 = coopLoad<coop_mat16x16<f16, B>>(&wh[(n0 + 48u) * p.k + k0], p.k);
        c00 = coopMultiplyAdd(a0, b0, c00);
        c01 = coopMultiplyAdd(a0, b1, c01);
        c02 = coopMultiplyAdd(a0, b2, c02);
        c03 = coopMultiplyAdd(a0, b3, c03);
        c10 = coopMultiplyAdd(a1, b0, c10);
        c11 = coopMultiplyAdd(a1, b1, c11);
        c12 = coopMultiplyAdd(a1, b2, c12);
        c13 = coopMultiplyAdd(a1, b3, c13);
        c20 = coopMultiplyAdd(a2, b0, c20);
        c21 = coopMultiplyAdd(a2, b1, c21);
        c22 = coopMultiplyAdd(a2, b2, c22);
        c23 = coopMultiplyAdd(a2, b3, c23);
        c30 = coopMultiplyAdd(a3, b0, c30);
        c31 = coopMultiplyAdd(a3, b1, c31);
        c32 = coopMultiplyAdd(a3, b2, c32);
        c33 = coopMultiplyAdd(a3, b3, c33);
    }
    let y00 = (m0 + 0u) * yn + n0 + 0u;
    coopStoreT(c00, &ys[y00], yn);
    let y01 = (m0 + 0u) * yn + n0 + 16u;
    coopStoreT(c01, &ys[y01], yn);
    let y02 = (m0 + 0u) * yn + n0 + 32u;
    coopStoreT(c02, &ys[y02], yn);
    let y03 = (m0 + 0u) * yn + n0 + 48u;
    coopStoreT(c03, &ys[y03], yn);
    let y10 = (m0 + 16u) * yn + n0 + 0u;
    coopStoreT(c10, &ys[y10], yn);
    let y11 = (m0 + 16u) * yn + n0 + 16u;
    coopStoreT(c11, &ys[y11], yn);
    let y12 = (m0 + 16u) * yn + n0 + 32u;
    coopStoreT(c12, &ys[y12], yn);
    let y13 = (m0 + 16u) * yn + n0 + 48u;
    coopStoreT(c13, &ys[y13], yn);
    let y20 = (m0 + 32u) * yn + n0 + 0u;
    coopStoreT(c20, &ys[y20], yn);
    let y21 = (m0 + 32u) * yn + n0 + 16u;
    coopStoreT(c21, &ys[y21], yn);
    let y22 = (m0 + 32u) * yn + n0 + 32u;
    coopStoreT(c22, &ys[y22], yn);
    let y23 = (m0 + 32u) * yn + n0 + 48u;
    coopStoreT(c23, &ys[y23], yn);
    let y30 = (m0 + 48u) * yn + n0 + 0u;
    coopStoreT(c30, &ys[y30], yn);
    let y31 = (m0 + 48u) * yn + n0 + 16u;
    coopStoreT(c31, &ys[y31], yn);
    let y32 = (m0 + 48u) * yn + n0 + 32u;
    coopStoreT(c32, &ys[y32], yn);
    let y33 = (m0 + 48u) * yn + n0 + 48u;
    coopStoreT(c33, &ys[y33], yn);
}

// Word q of the step at column k0 of the x tile (row q / (CK / 2)).
fn x_word(mt: u32, k0: u32, q: u32) -> u32 {
    let r = q / (CK / 2u);
    return xu[((mt + r) * p.k + k0) / 2u + q % (CK / 2u)];
}

fn w_word(nt: u32, k0: u32, q: u32) -> u32 {
    let r = q / (CK / 2u);
    return wu[((nt + r) * p.k + k0) / 2u + q % (CK / 2u)];
}

// Consecutive threads store consecutive words: no bank conflicts.
fn put(buf: u32, is_x: bool, q: u32, v: u32) {
    let r = q / (CK / 2u);
    let c = 2u * (q % (CK / 2u));
    // f16 -> f32 -> f16 is exact.
    let h = vec2<f16>(unpack2x16float(v));
    if (is_x) {
        let o = buf * STAGE_X + r * LDS + c;
        st_x[o] = h.x;
        st_x[o + 1u] = h.y;
    } else {
        let o = buf * STAGE_W + r * LDS + c;
        st_w[o] = h.x;
        st_w[o + 1u] = h.y;
    }
}

const MAXW: u32 = 32u;  // words per thread and step, at most (TM CK / 2 / WG)

@compute @workgroup_size(WG)
fn peak_staged(@builtin(local_invocation_index) lid: u32,
               @builtin(subgroup_id) sg: u32,
               @builtin(workgroup_id) wid: vec3<u32>) {
    let yn = p.n;
    let mt = wid.y * TM;
    let nt = wid.x * TN;
    let fm = (sg % SG_M) * 64u;
    let fn_ = (sg / SG_M) * 64u;
    let nx = WX / WG;
    let nw = WW / WG;
    var rx: array<u32, MAXW>;
    var rw: array<u32, MAXW>;
    for (var j = 0u; j < nx; j++) {
        rx[j] = x_word(mt, 0u, lid + j * WG);
    }
    for (var j = 0u; j < nw; j++) {
        rw[j] = w_word(nt, 0u, lid + j * WG);
    }
    for (var j = 0u; j < nx; j++) {
        put(0u, true, lid + j * WG, rx[j]);
    }
    for (var j = 0u; j < nw; j++) {
        put(0u, false, lid + j * WG, rw[j]);
    }
    workgroupBarrier();
    var c00 = coop_mat16x16<f32, C>();
    var c01 = coop_mat16x16<f32, C>();
    var c02 = coop_mat16x16<f32, C>();
    var c03 = coop_mat16x16<f32, C>();
    var c10 = coop_mat16x16<f32, C>();
    var c11 = coop_mat16x16<f32, C>();
    var c12 = coop_mat16x16<f32, C>();
    var c13 = coop_mat16x16<f32, C>();
    var c20 = coop_mat16x16<f32, C>();
    var c21 = coop_mat16x16<f32, C>();
    var c22 = coop_mat16x16<f32, C>();
    var c23 = coop_mat16x16<f32, C>();
    var c30 = coop_mat16x16<f32, C>();
    var c31 = coop_mat16x16<f32, C>();
    var c32 = coop_mat16x16<f32, C>();
    var c33 = coop_mat16x16<f32, C>();
    var step = 0u;
    for (var k0 = 0u; k0 < p.k; k0 += CK) {
        let cur = step % NBUF;
        let more = k0 + CK < p.k;
        if (more) {
            for (var j = 0u; j < nx; j++) {
                rx[j] = x_word(mt, k0 + CK, lid + j * WG);
            }
            for (var j = 0u; j < nw; j++) {
                rw[j] = w_word(nt, k0 + CK, lid + j * WG);
            }
        }
        for (var kk = 0u; kk < CK; kk += 16u) {
            let a0 = coopLoadT<coop_mat16x16<f16, A>>(&st_x[cur * STAGE_X + (fm + 0u) * LDS + kk], LDS);
            let a1 = coopLoadT<coop_mat16x16<f16, A>>(&st_x[cur * STAGE_X + (fm + 16u) * LDS + kk], LDS);
            let a2 = coopLoadT<coop_mat16x16<f16, A>>(&st_x[cur * STAGE_X + (fm + 32u) * LDS + kk], LDS);
            let a3 = coopLoadT<coop_mat16x16<f16, A>>(&st_x[cur * STAGE_X + (fm + 48u) * LDS + kk], LDS);
            let b0 = coopLoad<coop_mat16x16<f16, B>>(&st_w[cur * STAGE_W + (fn_ + 0u) * LDS + kk], LDS);
            let b1 = coopLoad<coop_mat16x16<f16, B>>(&st_w[cur * STAGE_W + (fn_ + 16u) * LDS + kk], LDS);
            let b2 = coopLoad<coop_mat16x16<f16, B>>(&st_w[cur * STAGE_W + (fn_ + 32u) * LDS + kk], LDS);
            let b3 = coopLoad<coop_mat16x16<f16, B>>(&st_w[cur * STAGE_W + (fn_ + 48u) * LDS + kk], LDS);
            c00 = coopMultiplyAdd(a0, b0, c00);
            c01 = coopMultiplyAdd(a0, b1, c01);
            c02 = coopMultiplyAdd(a0, b2, c02);
            c03 = coopMultiplyAdd(a0, b3, c03);
            c10 = coopMultiplyAdd(a1, b0, c10);
            c11 = coopMultiplyAdd(a1, b1, c11);
            c12 = coopMultiplyAdd(a1, b2, c12);
            c13 = coopMultiplyAdd(a1, b3, c13);
            c20 = coopMultiplyAdd(a2, b0, c20);
            c21 = coopMultiplyAdd(a2, b1, c21);
            c22 = coopMultiplyAdd(a2, b2, c22);
            c23 = coopMultiplyAdd(a2, b3, c23);
            c30 = coopMultiplyAdd(a3, b0, c30);
            c31 = coopMultiplyAdd(a3, b1, c31);
            c32 = coopMultiplyAdd(a3, b2, c32);
            c33 = coopMultiplyAdd(a3, b3, c33);
        }
        if (more) {
            let nxt = (step + 1u) % NBUF;
            if (NBUF == 1u) {
                workgroupBarrier();
            }
            for (var j = 0u; j < nx; j++) {
                put(nxt, true, lid + j * WG, rx[j]);
            }
            for (var j = 0u; j < nw; j++) {
                put(nxt, false, lid + j * WG, rw[j]);
            }
        }
        workgroupBarrier();
        step++;
    }
    let m0 = mt + fm;
    let n0 = nt + fn_;
    let y00 = (m0 + 0u) * yn + n0 + 0u;
    coopStoreT(c00, &ys[y00], yn);
    let y01 = (m0 + 0u) * yn + n0 + 16u;
    coopStoreT(c01, &ys[y01], yn);
    let y02 = (m0 + 0u) * yn + n0 + 32u;
    coopStoreT(c02, &ys[y02], yn);
    let y03 = (m0 + 0u) * yn + n0 + 48u;
    coopStoreT(c03, &ys[y03], yn);
    let y10 = (m0 + 16u) * yn + n0 + 0u;
    coopStoreT(c10, &ys[y10], yn);
    let y11 = (m0 + 16u) * yn + n0 + 16u;
    coopStoreT(c11, &ys[y11], yn);
    let y12 = (m0 + 16u) * yn + n0 + 32u;
    coopStoreT(c12, &ys[y12], yn);
    let y13 = (m0 + 16u) * yn + n0 + 48u;
    coopStoreT(c13, &ys[y13], yn);
    let y20 = (m0 + 32u) * yn + n0 + 0u;
    coopStoreT(c20, &ys[y20], yn);
    let y21 = (m0 + 32u) * yn + n0 + 16u;
    coopStoreT(c21, &ys[y21], yn);
    let y22 = (m0 + 32u) * yn + n0 + 32u;
    coopStoreT(c22, &ys[y22], yn);
    let y23 = (m0 + 32u) * yn + n0 + 48u;
    coopStoreT(c23, &ys[y23], yn);
    let y30 = (m0 + 48u) * yn + n0 + 0u;
    coopStoreT(c30, &ys[y30], yn);
    let y31 = (m0 + 48u) * yn + n0 + 16u;
    coopStoreT(c31, &ys[y31], yn);
    let y32 = (m0 + 48u) * yn + n0 + 32u;
    coopStoreT(c32, &ys[y32], yn);
    let y33 = (m0 + 48u) * yn + n0 + 48u;
    coopStoreT(c33, &ys[y33], yn);
}

// --- peak_v4: staging in 16-byte pieces -------------------------------------
// The same tiling as peak_staged, but each thread moves 16-byte pieces: global
// loads of mat2x4<f16> (8 halves) and two 8-byte vec4<f16> stores into
// workgroup arrays of vec4<f16>, from which the fragments are loaded with the
// stride counted in vec4s (SPIR-V's cooperative loads take vector pointers).
// A step stages CK = 32 columns: 4 pieces per tile row.
//
// PROBE (timing only, results wrong): 0 = the GEMM; 1 = stage the first step
// once and multiply from it every step (no global loads: the ceiling of
// fragment loads from workgroup memory plus multiply-adds); 2 = load the
// fragments once and only multiply-add in the loop (the multiply-add ceiling).

// 16-byte pieces: two columns of 4 halves.
@group(0) @binding(6) var<storage, read> xq: array<mat2x4<f16>>;
@group(0) @binding(7) var<storage, read> wq: array<mat2x4<f16>>;

override PROBE: u32 = 0u;
override LDS4: u32 = 10u;                 // padded row stride, vec4<f16>s
override STAGE_X4: u32 = TM * LDS4;
override STAGE_W4: u32 = TN * LDS4;
override ALL_X4: u32 = NBUF * STAGE_X4;
override ALL_W4: u32 = NBUF * STAGE_W4;
override PX: u32 = TM * 4u / WG;          // pieces per thread and step
override PW: u32 = TN * 4u / WG;

var<workgroup> sx4: array<vec4<f16>, ALL_X4>;
var<workgroup> sw4: array<vec4<f16>, ALL_W4>;

const MAXP: u32 = 8u;

fn x_piece(mt: u32, k0: u32, q: u32) -> mat2x4<f16> {
    return xq[((mt + q / 4u) * p.k + k0) / 8u + q % 4u];
}

fn w_piece(nt: u32, k0: u32, q: u32) -> mat2x4<f16> {
    return wq[((nt + q / 4u) * p.k + k0) / 8u + q % 4u];
}

fn put4(buf: u32, is_x: bool, q: u32, v: mat2x4<f16>) {
    let o = q / 4u * LDS4 + 2u * (q % 4u);
    let lo = v[0];
    let hi = v[1];
    if (is_x) {
        sx4[buf * STAGE_X4 + o] = lo;
        sx4[buf * STAGE_X4 + o + 1u] = hi;
    } else {
        sw4[buf * STAGE_W4 + o] = lo;
        sw4[buf * STAGE_W4 + o + 1u] = hi;
    }
}

@compute @workgroup_size(WG)
fn peak_v4(@builtin(local_invocation_index) lid: u32,
           @builtin(subgroup_id) sg: u32,
           @builtin(workgroup_id) wid: vec3<u32>) {
    let yn = p.n;
    let mt = wid.y * TM;
    let nt = wid.x * TN;
    let fm = (sg % SG_M) * 64u;
    let fn_ = (sg / SG_M) * 64u;
    var rx: array<mat2x4<f16>, MAXP>;
    var rw: array<mat2x4<f16>, MAXP>;
    for (var j = 0u; j < PX; j++) {
        rx[j] = x_piece(mt, 0u, lid + j * WG);
    }
    for (var j = 0u; j < PW; j++) {
        rw[j] = w_piece(nt, 0u, lid + j * WG);
    }
    for (var j = 0u; j < PX; j++) {
        put4(0u, true, lid + j * WG, rx[j]);
    }
    for (var j = 0u; j < PW; j++) {
        put4(0u, false, lid + j * WG, rw[j]);
    }
    workgroupBarrier();
    var c00 = coop_mat16x16<f32, C>();
    var c01 = coop_mat16x16<f32, C>();
    var c02 = coop_mat16x16<f32, C>();
    var c03 = coop_mat16x16<f32, C>();
    var c10 = coop_mat16x16<f32, C>();
    var c11 = coop_mat16x16<f32, C>();
    var c12 = coop_mat16x16<f32, C>();
    var c13 = coop_mat16x16<f32, C>();
    var c20 = coop_mat16x16<f32, C>();
    var c21 = coop_mat16x16<f32, C>();
    var c22 = coop_mat16x16<f32, C>();
    var c23 = coop_mat16x16<f32, C>();
    var c30 = coop_mat16x16<f32, C>();
    var c31 = coop_mat16x16<f32, C>();
    var c32 = coop_mat16x16<f32, C>();
    var c33 = coop_mat16x16<f32, C>();
    // PROBE 2: fragments loaded once, outside the loop.
    var a0 = coopLoadT<coop_mat16x16<f16, A>>(&sx4[(fm + 0u) * LDS4], LDS4);
    var a1 = coopLoadT<coop_mat16x16<f16, A>>(&sx4[(fm + 16u) * LDS4], LDS4);
    var a2 = coopLoadT<coop_mat16x16<f16, A>>(&sx4[(fm + 32u) * LDS4], LDS4);
    var a3 = coopLoadT<coop_mat16x16<f16, A>>(&sx4[(fm + 48u) * LDS4], LDS4);
    var b0 = coopLoad<coop_mat16x16<f16, B>>(&sw4[(fn_ + 0u) * LDS4], LDS4);
    var b1 = coopLoad<coop_mat16x16<f16, B>>(&sw4[(fn_ + 16u) * LDS4], LDS4);
    var b2 = coopLoad<coop_mat16x16<f16, B>>(&sw4[(fn_ + 32u) * LDS4], LDS4);
    var b3 = coopLoad<coop_mat16x16<f16, B>>(&sw4[(fn_ + 48u) * LDS4], LDS4);
    var step = 0u;
    for (var k0 = 0u; k0 < p.k; k0 += 32u) {
        let cur = select(step % NBUF, 0u, PROBE != 0u);
        let more = k0 + 32u < p.k && PROBE == 0u;
        if (more) {
            for (var j = 0u; j < PX; j++) {
                rx[j] = x_piece(mt, k0 + 32u, lid + j * WG);
            }
            for (var j = 0u; j < PW; j++) {
                rw[j] = w_piece(nt, k0 + 32u, lid + j * WG);
            }
        }
        for (var kk = 0u; kk < 32u; kk += 16u) {
            if (PROBE != 2u) {
                let xb = cur * STAGE_X4 + kk / 4u;
                let wb = cur * STAGE_W4 + kk / 4u;
                a0 = coopLoadT<coop_mat16x16<f16, A>>(&sx4[xb + (fm + 0u) * LDS4], LDS4);
                a1 = coopLoadT<coop_mat16x16<f16, A>>(&sx4[xb + (fm + 16u) * LDS4], LDS4);
                a2 = coopLoadT<coop_mat16x16<f16, A>>(&sx4[xb + (fm + 32u) * LDS4], LDS4);
                a3 = coopLoadT<coop_mat16x16<f16, A>>(&sx4[xb + (fm + 48u) * LDS4], LDS4);
                b0 = coopLoad<coop_mat16x16<f16, B>>(&sw4[wb + (fn_ + 0u) * LDS4], LDS4);
                b1 = coopLoad<coop_mat16x16<f16, B>>(&sw4[wb + (fn_ + 16u) * LDS4], LDS4);
                b2 = coopLoad<coop_mat16x16<f16, B>>(&sw4[wb + (fn_ + 32u) * LDS4], LDS4);
                b3 = coopLoad<coop_mat16x16<f16, B>>(&sw4[wb + (fn_ + 48u) * LDS4], LDS4);
            }
            c00 = coopMultiplyAdd(a0, b0, c00);
            c01 = coopMultiplyAdd(a0, b1, c01);
            c02 = coopMultiplyAdd(a0, b2, c02);
            c03 = coopMultiplyAdd(a0, b3, c03);
            c10 = coopMultiplyAdd(a1, b0, c10);
            c11 = coopMultiplyAdd(a1, b1, c11);
            c12 = coopMultiplyAdd(a1, b2, c12);
            c13 = coopMultiplyAdd(a1, b3, c13);
            c20 = coopMultiplyAdd(a2, b0, c20);
            c21 = coopMultiplyAdd(a2, b1, c21);
            c22 = coopMultiplyAdd(a2, b2, c22);
            c23 = coopMultiplyAdd(a2, b3, c23);
            c30 = coopMultiplyAdd(a3, b0, c30);
            c31 = coopMultiplyAdd(a3, b1, c31);
            c32 = coopMultiplyAdd(a3, b2, c32);
            c33 = coopMultiplyAdd(a3, b3, c33);
        }
        if (more) {
            let nxt = (step + 1u) % NBUF;
            if (NBUF == 1u) {
                workgroupBarrier();
            }
            for (var j = 0u; j < PX; j++) {
                put4(nxt, true, lid + j * WG, rx[j]);
            }
            for (var j = 0u; j < PW; j++) {
                put4(nxt, false, lid + j * WG, rw[j]);
            }
        }
        if (PROBE == 0u) {
            workgroupBarrier();
        }
        step++;
    }
    let m0 = mt + fm;
    let n0 = nt + fn_;
    let y00 = (m0 + 0u) * yn + n0 + 0u;
    coopStoreT(c00, &ys[y00], yn);
    let y01 = (m0 + 0u) * yn + n0 + 16u;
    coopStoreT(c01, &ys[y01], yn);
    let y02 = (m0 + 0u) * yn + n0 + 32u;
    coopStoreT(c02, &ys[y02], yn);
    let y03 = (m0 + 0u) * yn + n0 + 48u;
    coopStoreT(c03, &ys[y03], yn);
    let y10 = (m0 + 16u) * yn + n0 + 0u;
    coopStoreT(c10, &ys[y10], yn);
    let y11 = (m0 + 16u) * yn + n0 + 16u;
    coopStoreT(c11, &ys[y11], yn);
    let y12 = (m0 + 16u) * yn + n0 + 32u;
    coopStoreT(c12, &ys[y12], yn);
    let y13 = (m0 + 16u) * yn + n0 + 48u;
    coopStoreT(c13, &ys[y13], yn);
    let y20 = (m0 + 32u) * yn + n0 + 0u;
    coopStoreT(c20, &ys[y20], yn);
    let y21 = (m0 + 32u) * yn + n0 + 16u;
    coopStoreT(c21, &ys[y21], yn);
    let y22 = (m0 + 32u) * yn + n0 + 32u;
    coopStoreT(c22, &ys[y22], yn);
    let y23 = (m0 + 32u) * yn + n0 + 48u;
    coopStoreT(c23, &ys[y23], yn);
    let y30 = (m0 + 48u) * yn + n0 + 0u;
    coopStoreT(c30, &ys[y30], yn);
    let y31 = (m0 + 48u) * yn + n0 + 16u;
    coopStoreT(c31, &ys[y31], yn);
    let y32 = (m0 + 48u) * yn + n0 + 32u;
    coopStoreT(c32, &ys[y32], yn);
    let y33 = (m0 + 48u) * yn + n0 + 48u;
    coopStoreT(c33, &ys[y33], yn);
}
