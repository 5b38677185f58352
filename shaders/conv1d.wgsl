// Causal depthwise conv1d over time with a carried state, then SiLU (GDN step 2).
//
//   y[t, c] = silu(Σ_{j<K} w[c, j] · ext[t + j, c]),   ext = state rows (K−1, oldest
//   first) followed by the new input rows; the new state is ext's last K−1 rows.
//
// One thread per 4 channels (vec4) and block of `tb` tokens, walking its tokens in order with
// the last K−1 inputs in registers (reads and writes are coalesced over channels).
// `conv1d_silu` rewrites the state itself when one block covers all T tokens (decode);
// otherwise `conv1d_state` does it in a second launch, after every block has read
// the old state.
//
// Rows mode (rows != 0, a batched decode step): workgroup row wid.y convolves token
// (input and output row) wid.y, one token of its own sequence, on the conv state of
// slot slots[wid.y] of a pooled state buffer (slots conv_stride4 vec4s apart), and
// rewrites that state. Rows never share a slot.

struct ConvParams {
    t_len: u32,
    channels: u32,   // conv_dim
    in_stride: u32,  // row stride of the input (conv_dim + value_dim for qkvz)
    taps: u32,       // K (<= CONV_MAXK)
    tb: u32,         // tokens per block
    write_state: u32,
    rows: u32,          // 0: one sequence of t_len tokens; 1: rows mode
    conv_stride4: u32,  // vec4s between two slots of conv_st (rows mode)
    slots0: u32,
    slots1: u32,
    slots2: u32,
    slots3: u32,
    slots4: u32,
    slots5: u32,
    slots6: u32,
    slots7: u32,
}

override WG: u32 = 256u;
const CONV_MAXK: u32 = 8u;

// Four channels per thread (conv_dim and the row stride are multiples of 4).
@group(0) @binding(0) var<storage, read> conv_x: array<vec4<f32>>;         // [T, in_stride]
@group(0) @binding(1) var<storage, read> conv_w: array<f32>;               // [channels, K]
@group(0) @binding(2) var<storage, read_write> conv_st: array<vec4<f32>>;  // [K−1, channels]
@group(0) @binding(3) var<storage, read_write> conv_y: array<vec4<f32>>;   // [T, channels]
@group(0) @binding(4) var<uniform> cp: ConvParams;

// Slot of row `row` (two 16-bit slots per word, row 2i in the low half).
fn conv_slot(row: u32) -> u32 {
    var t = array<u32, 8>(cp.slots0, cp.slots1, cp.slots2, cp.slots3, cp.slots4, cp.slots5,
        cp.slots6, cp.slots7);
    return (t[row / 2u] >> (16u * (row % 2u))) & 0xffffu;
}

// Row e of the extended input for channels 4·c4 .. 4·c4+3: state rows from vec4
// `sb`, then input rows from row x0.
fn conv_ext(e: u32, c4: u32, sb: u32, x0: u32) -> vec4<f32> {
    let hist = cp.taps - 1u;
    if (e < hist) {
        return conv_st[sb + e * (cp.channels / 4u) + c4];
    }
    return conv_x[(x0 + e - hist) * (cp.in_stride / 4u) + c4];
}

@compute @workgroup_size(WG)
fn conv1d_silu(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let c4 = wid.x * WG + lid;
    let nc4 = cp.channels / 4u;
    if (c4 >= nc4) {
        return;
    }
    let hist = cp.taps - 1u;
    var t0 = wid.y * cp.tb;
    var t1 = min(cp.t_len, t0 + cp.tb);
    var x0 = 0u; // input / output row of local token 0
    var sb = 0u; // first vec4 of the state
    if (cp.rows != 0u) {
        x0 = wid.y;
        sb = conv_slot(wid.y) * cp.conv_stride4;
        t0 = 0u;
        t1 = 1u;
    }
    let xs = cp.in_stride / 4u;
    var w: array<vec4<f32>, CONV_MAXK>;
    var win: array<vec4<f32>, CONV_MAXK>; // win[j] = ext[t + j]: the K−1 inputs before token t
    let c = 4u * c4;
    for (var j = 0u; j < cp.taps; j++) {
        w[j] = vec4<f32>(
            conv_w[c * cp.taps + j],
            conv_w[(c + 1u) * cp.taps + j],
            conv_w[(c + 2u) * cp.taps + j],
            conv_w[(c + 3u) * cp.taps + j],
        );
    }
    for (var j = 0u; j < hist; j++) {
        win[j] = conv_ext(t0 + j, c4, sb, x0);
    }
    for (var t = t0; t < t1; t++) {
        let x = conv_x[(x0 + t) * xs + c4];
        var acc = vec4<f32>(0.0);
        for (var j = 0u; j < hist; j++) {
            acc += w[j] * win[j];
        }
        acc += w[hist] * x;
        for (var j = 0u; j + 1u < hist; j++) {
            win[j] = win[j + 1u];
        }
        if (hist > 0u) {
            win[hist - 1u] = x;
        }
        conv_y[(x0 + t) * nc4 + c4] = acc / (1.0 + exp(-acc));
    }
    if (cp.write_state != 0u) {
        for (var j = 0u; j < hist; j++) {
            conv_st[sb + j * nc4 + c4] = win[j];
        }
    }
}

// New state = ext[T .. T+K−1) per channel (old rows are read before any is written).
@compute @workgroup_size(WG)
fn conv1d_state(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let c4 = wid.x * WG + lid;
    let nc4 = cp.channels / 4u;
    if (c4 >= nc4) {
        return;
    }
    let hist = cp.taps - 1u;
    var nw: array<vec4<f32>, CONV_MAXK>;
    for (var j = 0u; j < hist; j++) {
        nw[j] = conv_ext(cp.t_len + j, c4, 0u, 0u);
    }
    for (var j = 0u; j < hist; j++) {
        conv_st[j * nc4 + c4] = nw[j];
    }
}
