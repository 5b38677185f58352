// Chunked GDN, step 3 (fully parallel thanks to the snapshots): one workgroup per
// (chunk, v-head) computes the chunk's whole output rows and their gated RMSNorm:
//   A = (Q̂K̂ᵀ) ⊙ Γ (lower, diagonal included)     (CH × CH, workgroup memory)
//   O = e^γ ⊙ (Q̂ · snap[n]) + A · V'
//   out = O / rms(O) · w · SiLU(z)                  (per row of the head, plain w)
// Thread (ti, tc) = (lid/16, lid%16) owns rows ti + 16·bi and columns tc + 16·m.

@group(0) @binding(0) var<storage, read> ox: array<f32>;
@group(0) @binding(1) var<storage, read> ovp: array<f32>;
@group(0) @binding(2) var<storage, read> ogam: array<f32>;
@group(0) @binding(3) var<storage, read> osnap: array<f32>;
@group(0) @binding(4) var<storage, read> qkvz: array<f32>;
@group(0) @binding(5) var<storage, read> norm_w: array<f32>;
@group(0) @binding(6) var<storage, read_write> gout: array<f32>;
@group(0) @binding(7) var<uniform> cp: ChunkParams;

var<workgroup> mat: array<f32, CC>;
var<workgroup> stage: array<f32, GDN_STAGE>;
var<workgroup> gam_s: array<f32, GDN_MAXC>;

@compute @workgroup_size(GDN_WG)
fn gdn_chunk_out(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let n = wid.x;
    let h = wid.y;
    let nv = cp.nv;
    let tl = cp.t_len;
    let kh = h / (nv / cp.nk);
    let t0 = n * CH;
    let cl = min(CH, tl - t0);
    let ti = lid / 16u;
    let tc = lid % 16u;
    let nb = CH / 16u;
    let nm = (DV + 15u) / 16u;
    let qbase = kh * DK;
    let kbase = cp.key_dim + kh * DK;
    if (lid < CH) {
        var g = 0.0;
        if (lid < cl) {
            g = ogam[h * tl + t0 + lid];
        }
        gam_s[lid] = g;
    }

    // Q̂K̂ᵀ over slices of 16 columns: q rows at stage[0 ..], k rows at stage[CH·16 ..].
    var acc: array<f32, 16>;
    for (var x = 0u; x < 16u; x++) {
        acc[x] = 0.0;
    }
    let hsz = CH * 16u;
    for (var c0 = 0u; c0 < DK; c0 += 16u) {
        workgroupBarrier();
        for (var e = lid; e < 2u * hsz; e += GDN_WG) {
            let ee = e % hsz;
            let i = ee / 16u;
            let c = c0 + ee % 16u;
            var v = 0.0;
            if (i < cl && c < DK) {
                v = ox[(t0 + i) * cp.conv_dim + select(qbase, kbase, e >= hsz) + c];
            }
            stage[e] = v;
        }
        workgroupBarrier();
        for (var c = 0u; c < 16u; c++) {
            for (var bi = 0u; bi < nb; bi++) {
                let qi = stage[(ti + 16u * bi) * 16u + c];
                for (var bj = 0u; bj < nb; bj++) {
                    acc[bi * 4u + bj] += qi * stage[hsz + (tc + 16u * bj) * 16u + c];
                }
            }
        }
    }
    for (var bi = 0u; bi < nb; bi++) {
        for (var bj = 0u; bj < nb; bj++) {
            let i = ti + 16u * bi;
            let j = tc + 16u * bj;
            var a = 0.0;
            if (j <= i && i < cl) {
                a = acc[bi * 4u + bj] * exp(gam_s[i] - gam_s[j]);
            }
            mat[i * CH + j] = a;
        }
    }

    // Q̂ · S_n over k slices of 8 rows: q at stage[0 .. CH·8], S rows at stage[CH·8 ..].
    var o: array<f32, 32>;
    for (var x = 0u; x < 32u; x++) {
        o[x] = 0.0;
    }
    let qs = CH * 8u;
    let sb = (h * cp.n_chunks + n) * DK * DV;
    for (var a0 = 0u; a0 < DK; a0 += 8u) {
        workgroupBarrier();
        for (var e = lid; e < qs + 8u * DV; e += GDN_WG) {
            var v = 0.0;
            if (e < qs) {
                let i = e / 8u;
                let a = a0 + e % 8u;
                if (i < cl && a < DK) {
                    v = ox[(t0 + i) * cp.conv_dim + qbase + a];
                }
            } else {
                let a = a0 + (e - qs) / DV;
                if (a < DK) {
                    v = osnap[sb + a * DV + (e - qs) % DV];
                }
            }
            stage[e] = v;
        }
        workgroupBarrier();
        for (var aa = 0u; aa < 8u; aa++) {
            for (var bi = 0u; bi < nb; bi++) {
                let qv = stage[(ti + 16u * bi) * 8u + aa];
                for (var m = 0u; m < nm; m++) {
                    let c = tc + 16u * m;
                    if (c < DV) {
                        o[bi * 8u + m] += qv * stage[qs + aa * DV + c];
                    }
                }
            }
        }
    }
    for (var bi = 0u; bi < nb; bi++) {
        let eg = exp(gam_s[ti + 16u * bi]);
        for (var m = 0u; m < nm; m++) {
            o[bi * 8u + m] *= eg;
        }
    }

    // + A · V' over slices of 16 rows.
    for (var j0 = 0u; j0 < cl; j0 += 16u) {
        workgroupBarrier();
        for (var e = lid; e < 16u * DV; e += GDN_WG) {
            let j = j0 + e / DV;
            var v = 0.0;
            if (j < cl) {
                v = ovp[(h * tl + t0 + j) * DV + e % DV];
            }
            stage[e] = v;
        }
        workgroupBarrier();
        for (var jj = 0u; jj < 16u; jj++) {
            for (var bi = 0u; bi < nb; bi++) {
                let av = mat[(ti + 16u * bi) * CH + j0 + jj];
                for (var m = 0u; m < nm; m++) {
                    let c = tc + 16u * m;
                    if (c < DV) {
                        o[bi * 8u + m] += av * stage[jj * DV + c];
                    }
                }
            }
        }
    }

    // Gated RMSNorm: row sums of squares over the 16 threads sharing ti.
    var part = vec4<f32>(0.0);
    for (var bi = 0u; bi < nb; bi++) {
        for (var m = 0u; m < nm; m++) {
            if (tc + 16u * m < DV) {
                part[bi] += o[bi * 8u + m] * o[bi * 8u + m];
            }
        }
    }
    workgroupBarrier();
    for (var x = 0u; x < 4u; x++) {
        stage[lid * 4u + x] = part[x];
    }
    workgroupBarrier();
    var ss = vec4<f32>(0.0);
    for (var x = 0u; x < 16u; x++) {
        for (var y = 0u; y < 4u; y++) {
            ss[y] += stage[(ti * 16u + x) * 4u + y];
        }
    }
    let vdim = nv * DV;
    for (var bi = 0u; bi < nb; bi++) {
        let i = ti + 16u * bi;
        if (i < cl) {
            let inv = 1.0 / sqrt(ss[bi] / f32(DV) + cp.eps);
            let t = t0 + i;
            for (var m = 0u; m < nm; m++) {
                let c = tc + 16u * m;
                if (c < DV) {
                    let z = qkvz[t * cp.qkvz_stride + cp.conv_dim + h * DV + c];
                    gout[t * vdim + h * DV + c] = o[bi * 8u + m] * inv * norm_w[c] * silu(z);
                }
            }
        }
    }
}
