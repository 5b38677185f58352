// Chunked GDN, step 1 (intra-chunk, fully parallel): one workgroup per (chunk, v-head).
//   β = sigmoid(b), g = −exp(A_log)·softplus(a + dt_bias), γ = cumsum(g) → gam
//   L = strict_lower(diag(β) K̂K̂ᵀ ⊙ Γ)                 (CH × CH, workgroup memory)
//   T = (I + L)⁻¹ in 16×16 blocks, in place (diagonal blocks by substitution)
//   U = T (β⊙V) → wu,  W = T (β⊙K̂⊙e^γ) → ww
// K̂ and V rows are staged through `stage` in slices. Thread (ti, tj) = (lid/16,
// lid%16) owns rows ti + 16·bi (bi < CH/16) and columns tj + 16·m.

@group(0) @binding(0) var<storage, read> wx: array<f32>;
@group(0) @binding(1) var<storage, read> ba: array<f32>;
@group(0) @binding(2) var<storage, read> a_log: array<f32>;
@group(0) @binding(3) var<storage, read> dt_bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> wu: array<f32>;
@group(0) @binding(5) var<storage, read_write> ww: array<f32>;
@group(0) @binding(6) var<storage, read_write> wgam: array<f32>;
@group(0) @binding(7) var<uniform> cp: ChunkParams;

var<workgroup> mat: array<f32, CC>;
var<workgroup> stage: array<f32, GDN_STAGE>;
var<workgroup> gam_s: array<f32, GDN_MAXC>;
var<workgroup> beta_s: array<f32, GDN_MAXC>;
var<workgroup> row_s: array<f32, GDN_MAXC>;

// out[i, c] = Σ_j T[i, j] · src_j[c] · β_j (· e^{γ_j} when `keys`), for the chunk's rows,
// with src the v (or k̂) channels of head `src_off`, width `dw`, into `dst` rows of
// width dw at `dst_row0`.
fn wy_apply(keys: bool, src_off: u32, dw: u32, dst_row0: u32, t0: u32, cl: u32, lid: u32) {
    let ti = lid / 16u;
    let tc = lid % 16u;
    let nb = CH / 16u;
    let nm = (dw + 15u) / 16u;
    var o: array<f32, 32>;
    for (var x = 0u; x < 32u; x++) {
        o[x] = 0.0;
    }
    for (var j0 = 0u; j0 < cl; j0 += 16u) {
        workgroupBarrier(); // the previous slice is consumed
        for (var e = lid; e < 16u * dw; e += GDN_WG) {
            let j = j0 + e / dw;
            var v = 0.0;
            if (j < cl) {
                v = wx[(t0 + j) * cp.conv_dim + src_off + e % dw] * beta_s[j];
                if (keys) {
                    v *= exp(gam_s[j]);
                }
            }
            stage[e] = v;
        }
        workgroupBarrier();
        for (var jj = 0u; jj < 16u; jj++) {
            for (var bi = 0u; bi < nb; bi++) {
                let tv = mat[(ti + 16u * bi) * CH + j0 + jj];
                for (var m = 0u; m < nm; m++) {
                    let c = tc + 16u * m;
                    if (c < dw) {
                        o[bi * 8u + m] += tv * stage[jj * dw + c];
                    }
                }
            }
        }
    }
    for (var bi = 0u; bi < nb; bi++) {
        let i = ti + 16u * bi;
        if (i < cl) {
            for (var m = 0u; m < nm; m++) {
                let c = tc + 16u * m;
                if (c < dw) {
                    let at = (dst_row0 + t0 + i) * dw + c;
                    if (keys) {
                        ww[at] = o[bi * 8u + m];
                    } else {
                        wu[at] = o[bi * 8u + m];
                    }
                }
            }
        }
    }
}

@compute @workgroup_size(GDN_WG)
fn gdn_chunk_wy(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let n = wid.x;
    let h = wid.y;
    let nv = cp.nv;
    let tl = cp.t_len;
    let kh = h / (nv / cp.nk);
    let t0 = n * CH;
    let cl = min(CH, tl - t0);

    // Gates and γ.
    if (lid < CH) {
        var g = 0.0;
        var b = 0.0;
        if (lid < cl) {
            let t = t0 + lid;
            b = sigmoid(ba[t * 2u * nv + h]);
            g = -exp(a_log[h]) * softplus(ba[t * 2u * nv + nv + h] + dt_bias[h]);
        }
        row_s[lid] = g;
        beta_s[lid] = b;
    }
    workgroupBarrier();
    if (lid < CH) {
        var acc = 0.0;
        for (var j = 0u; j <= lid; j++) {
            acc += row_s[j];
        }
        gam_s[lid] = acc;
        if (lid < cl) {
            wgam[h * tl + t0 + lid] = acc;
        }
    }

    // K̂K̂ᵀ over k slices of 16 columns.
    let ti = lid / 16u;
    let tj = lid % 16u;
    let nb = CH / 16u;
    var acc: array<f32, 16>;
    for (var x = 0u; x < 16u; x++) {
        acc[x] = 0.0;
    }
    let kbase = cp.key_dim + kh * DK;
    for (var c0 = 0u; c0 < DK; c0 += 16u) {
        workgroupBarrier();
        for (var e = lid; e < CH * 16u; e += GDN_WG) {
            let i = e / 16u;
            let c = c0 + e % 16u;
            var v = 0.0;
            if (i < cl && c < DK) {
                v = wx[(t0 + i) * cp.conv_dim + kbase + c];
            }
            stage[e] = v;
        }
        workgroupBarrier();
        for (var c = 0u; c < 16u; c++) {
            for (var bi = 0u; bi < nb; bi++) {
                let ki = stage[(ti + 16u * bi) * 16u + c];
                for (var bj = 0u; bj < nb; bj++) {
                    acc[bi * 4u + bj] += ki * stage[(tj + 16u * bj) * 16u + c];
                }
            }
        }
    }
    for (var bi = 0u; bi < nb; bi++) {
        for (var bj = 0u; bj < nb; bj++) {
            let i = ti + 16u * bi;
            let j = tj + 16u * bj;
            var l = 0.0;
            if (j < i && i < cl) {
                l = beta_s[i] * acc[bi * 4u + bj] * exp(gam_s[i] - gam_s[j]);
            }
            mat[i * CH + j] = l;
        }
    }
    workgroupBarrier();

    // T = (I + L)⁻¹ in 16 × 16 blocks (fla's scheme). Diagonal blocks: forward
    // substitution, one column per thread in registers, T[r][c] = −Σ_{j<r} L[r][j]·T[j][c]
    // (unit diagonal). No barriers: a thread only reads its own column and L.
    let nbk = CH / 16u;
    let bb = lid / 16u;
    let cc = lid % 16u;
    var tcol: array<f32, 16>;
    if (bb < nbk) {
        let base = 16u * bb;
        for (var r = 0u; r < 16u; r++) {
            var s = 0.0;
            for (var j = 0u; j < r; j++) {
                s += mat[(base + r) * CH + base + j] * tcol[j];
            }
            tcol[r] = select(select(0.0, 1.0, r == cc), -s, r > cc);
        }
    }
    workgroupBarrier();
    if (bb < nbk) {
        for (var r = 0u; r < 16u; r++) {
            mat[(16u * bb + r) * CH + 16u * bb + cc] = tcol[r];
        }
    }
    workgroupBarrier();
    // Blocks below the diagonal, block row by block row:
    // T_ij = −T_ii · X_ij,  X_ij = Σ_{j<=k<i} L_ik T_kj  (X in `stage`).
    for (var bi = 1u; bi < nbk; bi++) {
        for (var e = lid; e < bi * 256u; e += GDN_WG) {
            let row = 16u * bi + (e % 256u) / 16u;
            let col = 16u * (e / 256u) + e % 16u;
            var s = 0.0;
            for (var k = 16u * (e / 256u); k < 16u * bi; k++) {
                s += mat[row * CH + k] * mat[k * CH + col];
            }
            stage[e] = s;
        }
        workgroupBarrier();
        for (var e = lid; e < bi * 256u; e += GDN_WG) {
            let r = (e % 256u) / 16u;
            let c = e % 16u;
            var s = 0.0;
            for (var k = 0u; k < 16u; k++) {
                s += mat[(16u * bi + r) * CH + 16u * bi + k] * stage[(e / 256u) * 256u + k * 16u + c];
            }
            mat[(16u * bi + r) * CH + 16u * (e / 256u) + c] = -s;
        }
        workgroupBarrier();
    }

    wy_apply(false, 2u * cp.key_dim + h * DV, DV, h * tl, t0, cl, lid);
    wy_apply(true, kbase, DK, h * tl, t0, cl, lid);
}
