//! GPU time per launch, from timestamp queries: each launch runs in its own
//! compute pass with begin/end timestamps (slower than the real step, which is
//! one pass, but it attributes time to kernel families).

use crate::{Dispatch, GpuContext, KernelError};

/// Largest query set WebGPU allows.
const MAX_QUERIES: usize = 4096;

/// Runs `dispatches` once, each in its own timed pass, and returns
/// `(label, nanoseconds)` per launch in order. Needs `TIMESTAMP_QUERY`.
pub fn time_dispatches(
    ctx: &GpuContext,
    dispatches: &[&Dispatch],
) -> Result<Vec<(&'static str, f64)>, KernelError> {
    if !ctx.caps.timestamps {
        return Err(KernelError::Unsupported {
            what: "profiling".into(),
            detail: format!("adapter `{}` has no TIMESTAMP_QUERY", ctx.info.name),
        });
    }
    let period = ctx.queue.get_timestamp_period() as f64;
    let mut out = Vec::with_capacity(dispatches.len());
    for group in dispatches.chunks(MAX_QUERIES / 2) {
        let n = (2 * group.len()) as u32;
        let set = ctx.device.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("profile"),
            ty: wgpu::QueryType::Timestamp,
            count: n,
        });
        let resolve = ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("profile resolve"),
            size: n as u64 * 8,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let mut enc = ctx.device.create_command_encoder(&Default::default());
        for (i, d) in group.iter().enumerate() {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some(d.label),
                timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                    query_set: &set,
                    beginning_of_pass_write_index: Some(2 * i as u32),
                    end_of_pass_write_index: Some(2 * i as u32 + 1),
                }),
            });
            d.record(&mut pass);
        }
        enc.resolve_query_set(&set, 0..n, &resolve, 0);
        ctx.queue.submit([enc.finish()]);
        let bytes = ctx.read_bytes(&resolve, 0, n as u64 * 8)?;
        let ticks: Vec<u64> = bytemuck::pod_collect_to_vec(&bytes);
        for (i, d) in group.iter().enumerate() {
            let dt = ticks[2 * i + 1].saturating_sub(ticks[2 * i]) as f64 * period;
            out.push((d.label, dt));
        }
    }
    Ok(out)
}
