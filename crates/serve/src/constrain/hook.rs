//! What the server calls: the grammar engine built on the first constrained
//! request (a server that never gets one never pays for it), and a
//! request's [`Constraint`] compiled for its prompt.

use std::sync::OnceLock;

use qwgpu_model::engine::TokenMaskFn;

use super::{thinking_open, ConstrainError, Constraint, Grammars, Spec};
use crate::api::ApiError;
use crate::model_files::ModelFiles;

/// Prompt tokens read back to see whether the prompt leaves `<think>` open
/// (the template's generation prompt is its last few tokens).
const THINK_TAIL: usize = 256;

/// The model's grammar engine, built once on first use.
#[derive(Default)]
pub struct LazyGrammars {
    cell: OnceLock<Result<Grammars, String>>,
}

impl LazyGrammars {
    /// The engine over `files`' tokenizer (built now if not yet).
    pub fn get(&self, files: &ModelFiles) -> Result<&Grammars, ApiError> {
        self.cell
            .get_or_init(|| {
                let t0 = std::time::Instant::now();
                let g = Grammars::new(&files.tokenizer, files.text.vocab_size, &files.eos)
                    .map_err(|e| e.to_string());
                let secs = t0.elapsed().as_secs_f64();
                match &g {
                    Ok(_) => tracing::info!("grammar engine ready in {secs:.2} s"),
                    Err(e) => tracing::error!("grammar engine: {e}"),
                }
                g
            })
            .as_ref()
            .map_err(|e| {
                ApiError::invalid(
                    format!("constrained decoding is not available for this model: {e}"),
                    None,
                )
            })
    }
}

/// `spec`'s constraint for a reply to `prompt` (blocking: grammars compile
/// in milliseconds to tens of them; call it off the async threads). A schema
/// llguidance refuses is a 400 naming the field.
pub fn for_prompt(
    grammars: &LazyGrammars,
    files: &ModelFiles,
    spec: &Spec,
    prompt: &[u32],
) -> Result<Constraint, ApiError> {
    let g = grammars.get(files)?;
    let tail = &prompt[prompt.len().saturating_sub(THINK_TAIL)..];
    let thinking = files
        .tokenizer
        .decode(tail, false)
        .is_ok_and(|text| thinking_open(&text));
    g.compile(spec, thinking).map_err(|e| match e {
        ConstrainError::Grammar { param, detail } => ApiError::invalid(
            format!("`{param}` cannot be used as a grammar: {detail}"),
            Some(param),
        ),
        other => ApiError::server(other.to_string()),
    })
}

/// A step's mask callback for the engine's sampler (called while the GPU
/// runs the step's forward pass): `c`'s allowed tokens. It never fails the
/// step (see [`Constraint::fill_step_mask`]).
pub fn mask_fn(c: &mut Constraint) -> TokenMaskFn<'_> {
    Box::new(move |words: &mut [u32]| Ok(c.fill_step_mask(words)))
}

/// Advances `c` by the token just sampled (not end-of-sequence); the error
/// ends the reply.
pub fn commit(c: Option<&mut Constraint>, token: u32) -> Result<(), ConstrainError> {
    c.map_or(Ok(()), |c| c.commit(token))
}
