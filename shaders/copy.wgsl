// Plain word copy (snapshot / fork of session state, bandwidth probe):
// dst[dst_off + i] = src[src_off + i] for i < n (u32 words).

struct CopyParams {
    src_off: u32,
    dst_off: u32,
    n: u32,
    _pad: u32,
}

override WG: u32 = 256u;

@group(0) @binding(0) var<storage, read> src: array<u32>;
@group(0) @binding(1) var<storage, read_write> dst: array<u32>;
@group(0) @binding(2) var<uniform> cp: CopyParams;

@compute @workgroup_size(WG)
fn copy_words(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let stride = nwg.x * WG;
    for (var i = gid.x; i < cp.n; i += stride) {
        dst[cp.dst_off + i] = src[cp.src_off + i];
    }
}
