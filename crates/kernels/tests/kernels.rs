//! Every GPU kernel suite of this crate in one test binary (`kernels`): each
//! file of `tests/` stays a suite of its own, included here as a module, so
//! test names read `gdn::real_head_width_128`. One binary instead of one per
//! file: each linked wgpu and naga (~20 MB), which made CI's link time and the
//! binaries carried to the GPU machine (`cargo xtask gpu-tests`) grow with
//! every suite. Add a new suite's file here.

// Each suite declares `mod support;` (the shared weight builders) as it did as
// a binary of its own, so the files stay unchanged: one copy per suite.
#![allow(clippy::duplicate_mod)]

#[path = "attention.rs"]
mod attention;
#[path = "context.rs"]
mod context;
#[path = "coop_peak.rs"]
mod coop_peak;
#[path = "copy.rs"]
mod copy;
#[path = "embed.rs"]
mod embed;
#[path = "gdn.rs"]
mod gdn;
#[path = "gemv_bench.rs"]
mod gemv_bench;
#[path = "harness.rs"]
mod harness;
#[path = "matmul.rs"]
mod matmul;
#[path = "matmul_coop.rs"]
mod matmul_coop;
#[path = "matmul_coop_f16.rs"]
mod matmul_coop_f16;
#[path = "matmul_coop_fast.rs"]
mod matmul_coop_fast;
#[path = "matmul_coop_skinny.rs"]
mod matmul_coop_skinny;
#[path = "matmul_int4.rs"]
mod matmul_int4;
#[path = "matmul_norm.rs"]
mod matmul_norm;
#[path = "moe.rs"]
mod moe;
#[path = "moe_coop.rs"]
mod moe_coop;
#[path = "moe_grouped.rs"]
mod moe_grouped;
#[path = "norm.rs"]
mod norm;
#[path = "sample.rs"]
mod sample;
