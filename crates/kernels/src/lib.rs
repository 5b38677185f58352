//! `qwgpu-kernels`: WGSL compute kernels (FP8/BF16 GEMV and GEMM, gated delta
//! rule, conv1d, norms, RoPE, attention, MoE routing, sampling) and their hosts.
//!
//! **Placeholder.** This crate is intentionally empty until the WGSL-kernels
//! issue fills it; the shaders will live in the workspace's `shaders/` folder and
//! every kernel will be tested against `qwgpu_model::reference`. It exists now so
//! that the crate map and dependency direction (checkpoint → loader → kernels →
//! model → cli) are fixed from the start.
