//! Test hook (feature `testing`): the f16-scratch tensor-core GEMM's module
//! with its cooperative-matrix operations replaced by scalar code
//! (`matmul_coop_emu.rs`, the transformation `coop_fast`'s emulation uses
//! too), so lavapipe runs both pre-passes' scratch layouts, row and token
//! blocks and the rest of the kernel.

use std::cell::Cell;
use std::sync::OnceLock;

use crate::shaders;
use crate::spec::Uniform;

use super::super::coop_emu::Emulation;
use super::{F16Params, MATMUL_COOP_F16, MATMUL_COOP_F16_SPLIT, MATMUL_COOP_TAIL};

thread_local! {
    static ACTIVE: Cell<bool> = const { Cell::new(false) };
}

pub(in crate::matmul) static EMULATION: Emulation = Emulation {
    active: &ACTIVE,
    label: "matmul_coop_f16_emulated",
    files: &[
        &MATMUL_COOP_F16,
        &MATMUL_COOP_TAIL,
        &MATMUL_COOP_F16_SPLIT,
        &MATMUL_COOP_TAIL,
    ],
    support: &[&shaders::NUMERIC],
    uniforms: &[&F16Params::LAYOUT],
    entries: ["mm_coop_f16", "mm_coop_f16_split"],
    specs: OnceLock::new(),
};

/// Runs `f` with the f16 GEMM's launches on this thread built from the
/// emulated module (and its support check needing only f16).
pub fn emulate<R>(f: impl FnOnce() -> R) -> R {
    EMULATION.emulate(f)
}
