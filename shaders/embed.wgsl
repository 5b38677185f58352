// Embedding gather from a weight in its stored format (one piece of a GpuWeight):
//   h[t, c] = decode(w[ids[ids_off + t], c]) * scale(id, c)   for c < cols
// One workgroup (256 invocations) per token; each invocation loads vec4<u32> chunks of the row
// (4 F32, 8 BF16/F16 or 16 FP8 values) and decodes them exactly. The scale of
// element (r, c) is bitcast<f32>(scales[total_rows + scales[r] + c / block_cols])
// (see weights.rs); block_cols is a multiple of 4, so one u32 word never
// straddles two scale blocks and each word takes one scale.
// Tokens whose id lies outside this piece are skipped (another piece's launch
// writes them); ids >= total_rows are written as zeros by the first piece's launch.
// Needs numeric.wgsl in the module.

struct EmbedParams {
    ids_off: u32,
    t_count: u32,
    cols: u32,
    // vec4<u32> per row (stride_words / 4).
    stride4: u32,
    // First weight row held by this piece, and how many.
    row0: u32,
    rows: u32,
    total_rows: u32,
    block_cols: u32,
    zero_oob: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

override WG: u32 = 256u;
// WeightFormat code: 0 F32, 1 BF16, 2 F16, 3 E4M3, 4 E5M2.
override FORMAT: u32 = 1u;

@group(0) @binding(0) var<storage, read> wq: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read> scales: array<u32>;
@group(0) @binding(2) var<storage, read> ids: array<u32>;
@group(0) @binding(3) var<storage, read_write> h: array<f32>;
@group(0) @binding(4) var<uniform> ep: EmbedParams;

fn store(hb: u32, c: u32, v: f32) {
    if (c < ep.cols) {
        h[hb + c] = v;
    }
}

// The scale of the word starting at column c0 (any valid entry past the row end).
fn word_scale(c0: u32, srow: u32) -> f32 {
    let c = min(c0, ep.cols - 1u);
    return bitcast<f32>(scales[ep.total_rows + srow + c / ep.block_cols]);
}

// Decodes one u32 word holding elements c0.. (1, 2 or 4 of them) and stores them scaled.
fn put_word(hb: u32, c0: u32, word: u32, s: f32) {
    if (FORMAT == 0u) {
        store(hb, c0, bitcast<f32>(word) * s);
    } else if (FORMAT == 1u || FORMAT == 2u) {
        var v: vec2<f32>;
        if (FORMAT == 1u) {
            v = bf16x2(word);
        } else {
            v = f16x2(word);
        }
        store(hb, c0, v.x * s);
        store(hb, c0 + 1u, v.y * s);
    } else {
        var v: vec4<f32>;
        if (FORMAT == 3u) {
            v = e4m3x4(word);
        } else {
            v = e5m2x4(word);
        }
        store(hb, c0, v.x * s);
        store(hb, c0 + 1u, v.y * s);
        store(hb, c0 + 2u, v.z * s);
        store(hb, c0 + 3u, v.w * s);
    }
}

@compute @workgroup_size(WG)
fn embed(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let t = wid.y * nwg.x + wid.x;
    if (t >= ep.t_count) {
        return;
    }
    let id = ids[ep.ids_off + t];
    let hb = t * ep.cols;
    if (id >= ep.total_rows) {
        if (ep.zero_oob != 0u) {
            for (var c = lid; c < ep.cols; c += WG) {
                h[hb + c] = 0.0;
            }
        }
        return;
    }
    if (id < ep.row0 || id - ep.row0 >= ep.rows) {
        return;
    }
    let srow = scales[id];
    let base = (id - ep.row0) * ep.stride4;
    // Elements per u32 word and per vec4<u32>.
    let epw = select(select(1u, 2u, FORMAT == 1u || FORMAT == 2u), 4u, FORMAT >= 3u);
    let epv = 4u * epw;
    let nv = (ep.cols + epv - 1u) / epv;
    for (var j = lid; j < nv; j += WG) {
        // Every load of the chunk before any store (stores may alias loads for
        // the compiler, which would otherwise serialise the round trips).
        let c0 = j * epv;
        let q = wq[base + j];
        let s = vec4<f32>(
            word_scale(c0, srow),
            word_scale(c0 + epw, srow),
            word_scale(c0 + 2u * epw, srow),
            word_scale(c0 + 3u * epw, srow),
        );
        put_word(hb, c0, q.x, s.x);
        put_word(hb, c0 + epw, q.y, s.y);
        put_word(hb, c0 + 2u * epw, q.z, s.z);
        put_word(hb, c0 + 3u * epw, q.w, s.w);
    }
}
