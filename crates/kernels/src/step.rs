//! [`Step`]: the per-call values (position, token count, sampling seed and
//! counter) that position-dependent launches read from one small uniform buffer,
//! so a decode step's launches are recorded once and only this buffer changes.

crate::shader!(STEP, "step.wgsl");

crate::uniform_struct! {
    /// Mirrors `struct Step` in `shaders/step.wgsl`.
    #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
    pub struct Step as "Step" {
        /// Absolute position of this call's first token (= tokens already cached).
        pub pos: u32,
        /// Tokens in this call.
        pub n_tokens: u32,
        pub seed_lo: u32,
        pub seed_hi: u32,
        /// Sampling counter of this step.
        pub counter: u32,
        pub _pad: [u32; 3],
    }
}

impl Step {
    pub fn new(pos: u32, n_tokens: u32, seed: u64, counter: u32) -> Self {
        Self {
            pos,
            n_tokens,
            seed_lo: seed as u32,
            seed_hi: (seed >> 32) as u32,
            counter,
            _pad: [0; 3],
        }
    }
}
