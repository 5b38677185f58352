// Gated full attention (Qwen3.5 self_attn between the qkv projection and o_proj):
// launch parameters shared by the prep, decode, merge and prefill kernels, and the
// decode split rule. Static sizes come from this per-launch uniform; the position
// comes from the shared `Step` uniform so decode launches can be replayed.

struct AttnParams {
    // Tokens in this call (T).
    t: u32,
    nh: u32,
    nkv: u32,
    hd: u32,
    // Leading dims of each head that rotate (NeoX halves i, i + rot/2).
    rot: u32,
    // Rows of the rope table (it is [2, max_t, rot/2]) and of the q scratch.
    max_t: u32,
    // Rows of the KV-cache page bound to this launch.
    page_rows: u32,
    // Decode: this page's split count (merge: the splits of all pages).
    nsplit: u32,
    // qkv row width: 2*nh*hd + 2*nkv*hd.
    qkv_w: u32,
    // q heads per kv head (nh / nkv).
    group: u32,
    eps: f32,
    // hd^-0.5.
    scale: f32,
    // Decode: q heads per workgroup and head blocks per kv head.
    gb: u32,
    nhb: u32,
    // Position of the bound page's first row in the sequence.
    page_start: u32,
    // Decode: first partial slot of this page's splits.
    split_base: u32,
    // Prefill: PAGE_FIRST (start the online softmax) | PAGE_LAST (finish with the
    // gate); a page in between carries (max, sum, output) through the scratch.
    flags: u32,
    // Merge over rows (a batched decode step; grid y = row): 1, else 0. Row r's
    // partials start o_stride vec4s / ml_stride vec2s in, its split count is
    // the r-th 16-bit entry of nsplits0..7, its gate and output are row r of
    // qkv and out.
    rows: u32,
    o_stride: u32,
    ml_stride: u32,
    nsplits0: u32,
    nsplits1: u32,
    nsplits2: u32,
    nsplits3: u32,
    nsplits4: u32,
    nsplits5: u32,
    nsplits6: u32,
    nsplits7: u32,
}

const PAGE_FIRST: u32 = 1u;
const PAGE_LAST: u32 = 2u;

// Keys of the bound page visible to position `last` (inclusive).
fn page_visible(last: u32) -> u32 {
    if (last < ap.page_start) {
        return 0u;
    }
    return min(last + 1u - ap.page_start, ap.page_rows);
}

// Stand-in for -inf: exp(NEG_BIG - m) is 0 and NEG_BIG - NEG_BIG is 0, never NaN.
const NEG_BIG: f32 = -1.0e30;

// Fewest keys a decode split takes: short contexts use fewer splits, not tiny ones.
const ATTN_MIN_CHUNK: u32 = 64u;

// Keys per decode split for `kv_len` visible keys of a page: the split count is
// fixed per page (so launches do not depend on the position); the split length
// follows the position, so every split has work at any context length.
fn attn_chunk(kv_len: u32, nsplit: u32) -> u32 {
    return max(ATTN_MIN_CHUNK, (kv_len + nsplit - 1u) / nsplit);
}

fn attn_sigmoid4(x: vec4<f32>) -> vec4<f32> {
    return 1.0 / (1.0 + exp(-x));
}
