    // Eight rounds of two fragments per subgroup through its own 2 KiB of
    // st_y: token fragment i, pair 0 then pair 1; SwiGLU pairs gate fragment
    // (i, q) with up fragment (i, q + 2).
    let yo = sg * 512u;
    let yo2 = yo + 256u;
    // Token fragment 0.
    coopStoreT(c00, &st_y[yo], 16u);
    if (p.epi == 2u) {
        coopStoreT(c02, &st_y[yo2], 16u);
    } else {
        coopStoreT(c01, &st_y[yo2], 16u);
    }
    workgroupBarrier();
    fast_epilogue(sg, sl, m0, nt0, 0u, 0u);
    workgroupBarrier();
    if (p.epi == 2u) {
        coopStoreT(c01, &st_y[yo], 16u);
    } else {
        coopStoreT(c02, &st_y[yo], 16u);
    }
    coopStoreT(c03, &st_y[yo2], 16u);
    workgroupBarrier();
    fast_epilogue(sg, sl, m0, nt0, 0u, 1u);
    workgroupBarrier();
    // Token fragment 1.
    coopStoreT(c10, &st_y[yo], 16u);
    if (p.epi == 2u) {
        coopStoreT(c12, &st_y[yo2], 16u);
    } else {
        coopStoreT(c11, &st_y[yo2], 16u);
    }
    workgroupBarrier();
    fast_epilogue(sg, sl, m0, nt0, 1u, 0u);
    workgroupBarrier();
    if (p.epi == 2u) {
        coopStoreT(c11, &st_y[yo], 16u);
    } else {
        coopStoreT(c12, &st_y[yo], 16u);
    }
    coopStoreT(c13, &st_y[yo2], 16u);
    workgroupBarrier();
    fast_epilogue(sg, sl, m0, nt0, 1u, 1u);
    workgroupBarrier();
    // Token fragment 2.
    coopStoreT(c20, &st_y[yo], 16u);
    if (p.epi == 2u) {
        coopStoreT(c22, &st_y[yo2], 16u);
    } else {
        coopStoreT(c21, &st_y[yo2], 16u);
    }
    workgroupBarrier();
    fast_epilogue(sg, sl, m0, nt0, 2u, 0u);
    workgroupBarrier();
    if (p.epi == 2u) {
        coopStoreT(c21, &st_y[yo], 16u);
    } else {
        coopStoreT(c22, &st_y[yo], 16u);
    }
    coopStoreT(c23, &st_y[yo2], 16u);
    workgroupBarrier();
    fast_epilogue(sg, sl, m0, nt0, 2u, 1u);
    workgroupBarrier();
    // Token fragment 3.
    coopStoreT(c30, &st_y[yo], 16u);
    if (p.epi == 2u) {
        coopStoreT(c32, &st_y[yo2], 16u);
    } else {
        coopStoreT(c31, &st_y[yo2], 16u);
    }
    workgroupBarrier();
    fast_epilogue(sg, sl, m0, nt0, 3u, 0u);
    workgroupBarrier();
    if (p.epi == 2u) {
        coopStoreT(c31, &st_y[yo], 16u);
    } else {
        coopStoreT(c32, &st_y[yo], 16u);
    }
    coopStoreT(c33, &st_y[yo2], 16u);
    workgroupBarrier();
    fast_epilogue(sg, sl, m0, nt0, 3u, 1u);
}
