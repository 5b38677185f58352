//! Packed test weights shared by the kernel tests: the library's shared test
//! cases own them (`qwgpu_kernels::testing::cases::weights`), so the browser
//! runner builds the same weights and references.

// Each test binary uses part of this module.
#![allow(unused_imports, dead_code)]

pub mod bench;
pub mod matmul_case;
pub mod spirv;

pub use qwgpu_kernels::testing::cases::weights::*;
