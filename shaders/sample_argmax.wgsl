// Sampling: reduction of the per-block (max, argmax) partials (needs `part` and `sp`).

// The row's (max, argmax) from the partials written by sample_partial; the
// module's entry file declares `part` (array<u32>: [2b] max bits, [2b+1] index).
fn reduce_partials(lid: u32) -> Best {
    var b = Best(bitcast<f32>(NEG_INF_BITS), NO_INDEX);
    for (var k = lid; k < sp.nblocks; k += WG) {
        let v = bitcast<f32>(part[part_base + 2u * k]);
        let i = part[part_base + 2u * k + 1u];
        // Blocks in ascending order: strict > keeps the lowest index on ties.
        if (v > b.v || b.i == NO_INDEX) {
            b = Best(v, i);
        }
    }
    return wg_argmax(b, lid);
}
