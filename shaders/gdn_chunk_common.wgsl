// Shared declarations of the chunked (WY/UT) Gated DeltaNet kernels
// (gdn_chunk_prep / _wy / _state / _out.wgsl; each module is numeric.wgsl, this
// file, then the kernel file).
//
// Chunk of CH tokens (16, 32 or 64) starting at t0, length cl = min(CH, T − t0);
// γ = cumsum(g) within the chunk, Γᵢⱼ = e^{γᵢ−γⱼ} (i ≥ j; never evaluated for j > i,
// where it can overflow). Scratch layouts (T = this call's token count):
//   gx   [T, conv_dim]   conv+SiLU output; q̂, k̂ normalised in place by gdn_qk_norm
//   U/V' [nv, T, dv]     U = (I+L)⁻¹(β⊙V), overwritten by V' = U − W·S_n
//   W    [nv, T, dk]     W = (I+L)⁻¹(β⊙K̂⊙e^γ)
//   gam  [nv, T]         γ
//   snap [nv, n_chunks, dk, dv]   state before each chunk

struct ChunkParams {
    t_len: u32,
    nv: u32,
    nk: u32,
    conv_dim: u32,
    qkvz_stride: u32,
    key_dim: u32,
    n_chunks: u32,
    _pad0: u32,
    eps: f32,
    q_scale: f32,
    _pad1: u32,
    _pad2: u32,
}

// Thread layouts below are 16 × 16 over 256 invocations.
const GDN_WG: u32 = 256u;
override DK: u32 = 128u;
override DV: u32 = 128u;
override CH: u32 = 64u;    // chunk length: 16, 32 or 64
override CC: u32 = 4096u;  // CH · CH
const GDN_MAXC: u32 = 64u;
const GDN_STAGE: u32 = 2048u;
const GDN_L2_EPS: f32 = 1e-6;
