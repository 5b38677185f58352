//! Packed weights checked against the one shape table
//! ([`qwgpu_checkpoint::expected::packed_shape`]), by the GPU model before
//! upload and by the CPU reference before it dequantizes.

use qwgpu_checkpoint::expected::{packed_shape, Packed, PackedShape};
use qwgpu_checkpoint::TextConfig;
use qwgpu_loader::PackedWeight;

use crate::ModelError;

fn expected(c: &TextConfig, kind: Packed, tensor: &str) -> Result<PackedShape, ModelError> {
    packed_shape(c, kind).ok_or_else(|| ModelError::Config {
        detail: format!("`{tensor}` ({kind:?}) does not exist in a model with this FFN kind"),
    })
}

/// Checks that matrix `w` has the shape `c` implies for a `kind` weight.
pub(crate) fn check_matrix(
    c: &TextConfig,
    kind: Packed,
    w: &PackedWeight,
) -> Result<(), ModelError> {
    let want = expected(c, kind, &w.name)?;
    if want.shape != [w.rows, w.cols] {
        return Err(ModelError::WeightShape {
            tensor: w.name.clone(),
            expected: want.shape,
            got: vec![w.rows, w.cols],
            why: want.formula,
        });
    }
    Ok(())
}

/// Checks that vector `v` (weight `name`) has the length `c` implies for a `kind` weight.
pub(crate) fn check_vector(
    c: &TextConfig,
    kind: Packed,
    name: &str,
    v: &[f32],
) -> Result<(), ModelError> {
    let want = expected(c, kind, name)?;
    if want.shape != [v.len()] {
        return Err(ModelError::WeightShape {
            tensor: name.to_string(),
            expected: want.shape,
            got: vec![v.len()],
            why: want.formula,
        });
    }
    Ok(())
}
