//! dtype → f32 conversion (checkpoint helper implements).
use crate::{CheckpointError, TensorView};

pub(crate) fn to_f32(_t: &TensorView<'_>) -> Result<Vec<f32>, CheckpointError> {
    todo!("checkpoint helper")
}
