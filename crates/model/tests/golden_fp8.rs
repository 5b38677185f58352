//! The reference model reproduces HF transformers' logits on every FP8 fixture
//! (quant `fp8-*`): the loader's dequantization is exact, so the
//! same f32 tolerance applies.

mod golden_common;

#[test]
fn reference_matches_hf_on_fp8_fixtures() {
    golden_common::check_fixtures("fp8", |q| q.starts_with("fp8"));
}
