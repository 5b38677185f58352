//! Test hook (feature `testing`): the fast tensor-core GEMM's module with its
//! cooperative-matrix operations replaced by scalar code
//! (`matmul_coop_emu.rs`), so lavapipe runs the pre-pass's scratch layout,
//! token blocks and the rest of the kernel.

use std::cell::Cell;
use std::sync::OnceLock;

use crate::shaders;
use crate::spec::Uniform;

use super::super::coop_emu::Emulation;
use super::super::{MmParams, MATMUL_COMMON};
use super::{MATMUL_COOP_FAST, MATMUL_COOP_SPLIT, MATMUL_COOP_TAIL};

thread_local! {
    static ACTIVE: Cell<bool> = const { Cell::new(false) };
}

pub(in crate::matmul) static EMULATION: Emulation = Emulation {
    active: &ACTIVE,
    label: "matmul_coop_fast_emulated",
    files: &[
        &MATMUL_COOP_FAST,
        &MATMUL_COOP_TAIL,
        &MATMUL_COOP_SPLIT,
        &MATMUL_COOP_TAIL,
    ],
    support: &[&shaders::NUMERIC, &MATMUL_COMMON],
    uniforms: &[&MmParams::LAYOUT],
    entries: ["mm_coop_fast", "mm_coop_split"],
    specs: OnceLock::new(),
};

/// Runs `f` with the fast GEMM's launches on this thread built from the
/// emulated module (and its support check needing only f16).
pub fn emulate<R>(f: impl FnOnce() -> R) -> R {
    EMULATION.emulate(f)
}
