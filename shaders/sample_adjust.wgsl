// Sampling controls, before the pick (one launch per row, one logit per
// invocation): adj[i] = the row's logit i after the penalties (from the
// row's token counts) and the allowed-token mask. Host mirror:
// qwgpu_ops::sampling::controls::adjusted_logits.
//   counts[i]: bit 31 = token i is in the context, bits 0..31 = times generated.
//   repetition (seen or generated): l > 0 ? l * inv_rep : l * rep
//   then l - (frequency * n + presence * [n > 0])
//   mask: bit i % 32 of mask[mask_off + i / 32] clear -> -inf (NaN and +inf
//   stay, so a broken row is still reported).

override WG: u32 = 256u;

struct AdjustParams {
    vocab: u32,
    logits_off: u32,
    adj_off: u32,
    mask_off: u32,
    // Bit 0: penalties on; bit 1: mask on.
    flags: u32,
    rep: f32,
    inv_rep: f32,
    presence: f32,
    frequency: f32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<storage, read> logits: array<f32>;
@group(0) @binding(1) var<storage, read_write> adj: array<f32>;
@group(0) @binding(2) var<storage, read> counts: array<u32>;
@group(0) @binding(3) var<storage, read> mask: array<u32>;
@group(0) @binding(4) var<uniform> ap: AdjustParams;

@compute @workgroup_size(WG)
fn sample_adjust(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    if (i >= ap.vocab) {
        return;
    }
    var l = logits[ap.logits_off + i];
    if ((ap.flags & 1u) != 0u) {
        let c = counts[i];
        let n = c & 0x7fffffffu;
        if ((c & 0x80000000u) != 0u || n > 0u) {
            l = select(l * ap.rep, l * ap.inv_rep, l > 0.0);
        }
        let pen = ap.frequency * f32(n) + ap.presence * select(0.0, 1.0, n > 0u);
        l = l - pen;
    }
    if ((ap.flags & 2u) != 0u) {
        let allowed = ((mask[ap.mask_off + i / 32u] >> (i % 32u)) & 1u) != 0u;
        let bits = bitcast<u32>(l) & 0x7fffffffu;
        // Keep NaN and +inf (bits >= 0x7f800000 with the sign clear).
        let keep = bits > 0x7f800000u || bitcast<u32>(l) == 0x7f800000u;
        if (!allowed && !keep) {
            l = bitcast<f32>(0xff800000u);
        }
    }
    adj[ap.adj_off + i] = l;
}
