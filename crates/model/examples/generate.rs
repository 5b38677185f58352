//! A short generation with the engine API: load a model folder (the GPU when
//! there is an adapter, else the CPU reference), prefill a prompt, sample.
//! Token ids in and out: the tokenizer is the caller's (e.g. the `tokenizers`
//! crate on the folder's `tokenizer.json`).
//!
//! `cargo run -p qwgpu-model --example generate [-- <model folder>]`
//! (default: the bundled tiny random-weight model, so its tokens are noise).

use qwgpu_model::engine::{LoadOptions, Model, SamplingParams};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args()
        .nth(1)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../tests/fixtures/dense-bf16-text")
        });
    let model = Model::load(&dir, &LoadOptions::default())?;
    let mut session = model.new_session()?;
    session.set_seed(7);
    let params = SamplingParams {
        temperature: 0.8,
        ..SamplingParams::greedy()
    };
    let prompt = [1u32, 2, 3];
    let mut tokens = vec![model.sample_next(&mut session, &prompt, &params)?]; // prefill + sample
    while tokens.len() < 16 {
        let last = tokens[tokens.len() - 1];
        tokens.push(model.sample_next(&mut session, &[last], &params)?); // one decode step
    }
    println!(
        "{backend}: {prompt:?} -> {tokens:?}",
        backend = model.backend_name()
    );
    Ok(())
}
