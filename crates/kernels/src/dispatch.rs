//! A recorded kernel launch: pipeline, bind group (made once) and grid. The model
//! keeps these and records them into one compute pass per step.

use std::sync::Arc;

use crate::{GpuContext, KernelError};

/// One kernel launch with its resources bound.
#[derive(Debug, Clone)]
pub struct Dispatch {
    pub label: &'static str,
    pub pipeline: Arc<wgpu::ComputePipeline>,
    pub bind: wgpu::BindGroup,
    pub groups: [u32; 3],
}

/// Largest grid dimension WebGPU guarantees.
pub const MAX_GROUPS: u32 = 65535;

impl Dispatch {
    /// Records this launch into `pass` (skipped when the grid is empty).
    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>) {
        if self.groups.contains(&0) {
            return;
        }
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &self.bind, &[]);
        pass.dispatch_workgroups(self.groups[0], self.groups[1], self.groups[2]);
    }
}

/// Splits `n` workgroups over x and y so neither exceeds [`MAX_GROUPS`]; kernels
/// recover the linear index as `wid.y * nwg.x + wid.x` and skip those past `n`.
pub fn grid_1d(n: u32) -> [u32; 3] {
    if n <= MAX_GROUPS {
        [n, 1, 1]
    } else {
        let y = n.div_ceil(MAX_GROUPS);
        [n.div_ceil(y), y, 1]
    }
}

impl GpuContext {
    /// Records `dispatches` into one compute pass, submits, and waits (tests and
    /// one-off work; the model records its own passes).
    pub fn run(&self, label: &str, dispatches: &[&Dispatch]) -> Result<(), KernelError> {
        let mut enc = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(label) });
        {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some(label),
                timestamp_writes: None,
            });
            for d in dispatches {
                d.record(&mut pass);
            }
        }
        self.queue.submit([enc.finish()]);
        self.wait(label)
    }
}
