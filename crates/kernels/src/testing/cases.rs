//! Kernel test cases shared by the native suites (`tests/*.rs`, run through
//! `pollster::block_on` on each variant context) and the browser runner
//! (`qwgpu-web`'s `browser_kernels` test, awaited on the page's WebGPU
//! adapter): each case builds random inputs, launches the kernel, reads the
//! output back with the async readbacks ([`crate::GpuContext::read_f32_async`],
//! ready at once natively) and checks it against the CPU reference
//! (`qwgpu-ops`, `qwgpu_loader::dequantize`) at the suite's stated tolerance.
//! Nothing here blocks, so the same code runs in a web page.

pub mod attention;
pub mod gdn;
pub mod int4;
pub mod matmul;
pub mod norm;
pub mod sample;
pub mod weights;
