//! The reference model reproduces HF transformers' logits on every 4-bit
//! fixture (GPTQ, AWQ, compressed-tensors W4A16): the loader's canonical
//! int4 form dequantizes exactly to the weights HF ran, so the same f32
//! tolerance applies.

mod golden_common;

#[test]
fn reference_matches_hf_on_int4_fixtures() {
    golden_common::check_fixtures("int4", |q| q.ends_with("int4") || q.ends_with("w4a16"));
}
