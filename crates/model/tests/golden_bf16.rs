//! The reference model reproduces HF transformers' logits on every BF16 fixture.

mod golden_common;

#[test]
fn reference_matches_hf_on_bf16_fixtures() {
    golden_common::check_fixtures("bf16", |q| q == "bf16");
}
