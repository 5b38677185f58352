// Attention prep, one workgroup per (head, token): q and k heads get the (1 + w)
// RMSNorm and partial NeoX RoPE (cos/sin from the host-filled table, rows = this
// call's tokens); q goes to the scratch [T, nh, hd], k and v to cache rows
// pos + t (pos from Step) of the bound page (the host binds the page holding
// all of them). The gate half of q_proj is not copied: the attention
// epilogues read it from qkv directly.
// Needs a reduce file (wg_sum) first, then step.wgsl, attention_common.wgsl.

override WG: u32 = 64u;

@group(0) @binding(0) var<storage, read> qkv: array<f32>;
@group(0) @binding(1) var<storage, read> q_norm: array<f32>;
@group(0) @binding(2) var<storage, read> k_norm: array<f32>;
@group(0) @binding(3) var<storage, read> rope: array<f32>;
@group(0) @binding(4) var<storage, read_write> q_out: array<f32>;
@group(0) @binding(5) var<storage, read_write> keys: array<f32>;
@group(0) @binding(6) var<storage, read_write> values: array<f32>;
@group(0) @binding(7) var<uniform> st: Step;
@group(0) @binding(8) var<uniform> ap: AttnParams;

// Normalised element d of the head starting at qkv[src] (same rounding order as
// the CPU: (x * r) * (1 + w)).
fn prep_normed(src: u32, d: u32, r: f32, is_q: bool) -> f32 {
    let w = select(k_norm[d], q_norm[d], is_q);
    return (qkv[src + d] * r) * (1.0 + w);
}

@compute @workgroup_size(WG)
fn attn_prep(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let head = wid.x;
    let t = wid.y;
    let hd = ap.hd;
    let row = t * ap.qkv_w;
    let kv_base = row + 2u * ap.nh * hd;
    // Row in the bound page. The host guarantees the page holds pos .. pos + T;
    // never write outside it anyway.
    let in_cache = st.pos + t >= ap.page_start && st.pos + t - ap.page_start < ap.page_rows;
    let dst_row = select(0u, st.pos + t - ap.page_start, in_cache);
    if (head >= ap.nh + ap.nkv) {
        let vh = head - ap.nh - ap.nkv;
        if (in_cache) {
            let src = kv_base + ap.nkv * hd + vh * hd;
            let dst = (dst_row * ap.nkv + vh) * hd;
            for (var d = lid; d < hd; d += WG) {
                values[dst + d] = qkv[src + d];
            }
        }
        return;
    }
    let is_q = head < ap.nh;
    // q_proj rows per head are [query_h | gate_h].
    var src = kv_base + (head - ap.nh) * hd;
    if (is_q) {
        src = row + head * 2u * hd;
    }
    var ss = 0.0;
    for (var d = lid; d < hd; d += WG) {
        let x = qkv[src + d];
        ss += x * x;
    }
    let total = wg_sum(ss, lid);
    let r = 1.0 / sqrt(total / f32(hd) + ap.eps);
    let half = ap.rot / 2u;
    let cos_row = t * half;
    let sin_row = ap.max_t * half + t * half;
    for (var d = lid; d < hd; d += WG) {
        var y = prep_normed(src, d, r, is_q);
        if (d < half) {
            // x' = x1*cos - x2*sin
            let c = rope[cos_row + d];
            let s = rope[sin_row + d];
            y = y * c - prep_normed(src, d + half, r, is_q) * s;
        } else if (d < ap.rot) {
            // x' = x2*cos + x1*sin
            let i = d - half;
            let c = rope[cos_row + i];
            let s = rope[sin_row + i];
            y = y * c + prep_normed(src, i, r, is_q) * s;
        }
        if (is_q) {
            q_out[(t * ap.nh + head) * hd + d] = y;
        } else if (in_cache) {
            keys[(dst_row * ap.nkv + head - ap.nh) * hd + d] = y;
        }
    }
}
