use qwgpu_kernels::view::TensorView;
use qwgpu_kernels::{copy, testing};

#[test]
fn copy_words_moves_the_requested_range_only() {
    for t in testing::contexts() {
        let ctx = &t.ctx;
        for (n, src_off, dst_off) in [(1u32, 0u32, 0u32), (3, 5, 2), (1000, 7, 65)] {
            let src: Vec<u32> = (0..n + src_off).map(|i| i * 7 + 1).collect();
            let src_buf = ctx.upload("src", &src).unwrap();
            let dst_buf = ctx.storage("dst", ((n + dst_off + 3) * 4) as u64).unwrap();
            ctx.queue.write_buffer(
                &dst_buf,
                0,
                bytemuck::cast_slice(&vec![0xdeadu32; (dst_buf.size() / 4) as usize]),
            );
            let (from, to) = (
                TensorView::words(&src_buf, src_off, n),
                TensorView::words(&dst_buf, dst_off, n),
            );
            let d = copy::copy_words(ctx, &from, &to).unwrap();
            ctx.run("copy", &[&d]).unwrap();
            let got = ctx
                .read_u32(&dst_buf, 0, (n + dst_off + 3) as usize)
                .unwrap();
            for (i, g) in got.iter().enumerate() {
                let i = i as u32;
                let want = if i >= dst_off && i < dst_off + n {
                    src[(i - dst_off + src_off) as usize]
                } else {
                    0xdead
                };
                assert_eq!(*g, want, "{t_name} n {n} word {i}", t_name = t.name);
            }
        }
    }
}

#[test]
fn copy_out_of_range_is_a_typed_error() {
    let t = testing::contexts()[0];
    let src = t.ctx.upload("src", &[1u32; 4]).unwrap();
    let dst = t.ctx.storage("dst", 16).unwrap();
    let (from, to) = (TensorView::words(&src, 2, 4), TensorView::words(&dst, 0, 4));
    let err = copy::copy_words(&t.ctx, &from, &to).unwrap_err();
    assert!(err.to_string().contains("exceeds"), "{err}");
}

#[test]
fn a_buffer_over_the_device_limits_is_a_capacity_error() {
    for t in testing::contexts() {
        let over = t.ctx.limits.max_buffer_size + 1;
        let err = t.ctx.storage("huge", over).unwrap_err();
        assert!(
            matches!(err, qwgpu_kernels::KernelError::Capacity { .. }),
            "{t_name}: {err}",
            t_name = t.name
        );
        let bind = t.ctx.limits.max_storage_buffer_binding_size + 16;
        let err = t.ctx.check_binding("binding", bind).unwrap_err();
        assert!(
            err.to_string().contains("max_storage_buffer_binding_size")
                || err.to_string().contains("max_buffer_size"),
            "{t_name}: {err}",
            t_name = t.name
        );
    }
}
