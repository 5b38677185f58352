//! Element types a Qwen3.5 checkpoint may store.

/// Element type of a checkpoint tensor. Only the types Qwen3.5 releases use are
/// represented; any other safetensors dtype is rejected with
/// [`crate::CheckpointError::UnsupportedDtype`] naming the tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dtype {
    F32,
    F16,
    BF16,
    /// `float8_e4m3fn`: bias 7, no infinities, NaN = 0x7F/0xFF.
    F8E4M3,
    /// `float8_e5m2`: IEEE-like, the high byte of an f16.
    F8E5M2,
    /// 32-bit little-endian integers: the packed 4-bit words of GPTQ / AWQ /
    /// compressed-tensors checkpoints (`qweight`, `qzeros`, `weight_packed`,
    /// `weight_zero_point`), `g_idx` and `weight_shape`. Never a float weight
    /// by itself; a loaded 4-bit weight carries it as its storage type
    /// (eight nibbles per word, see `qwgpu-loader`'s `Int4View`).
    I32,
    /// 64-bit little-endian integers: compressed-tensors' `weight_shape`
    /// (`torch.tensor(weight.shape)`). Metadata only.
    I64,
}

impl Dtype {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Dtype::F32 | Dtype::I32 => 4,
            Dtype::I64 => 8,
            Dtype::F16 | Dtype::BF16 => 2,
            Dtype::F8E4M3 | Dtype::F8E5M2 => 1,
        }
    }

    /// True for the two FP8 formats.
    pub fn is_fp8(self) -> bool {
        matches!(self, Dtype::F8E4M3 | Dtype::F8E5M2)
    }

    /// True for the integer types ([`Dtype::I32`], [`Dtype::I64`]).
    pub fn is_int(self) -> bool {
        matches!(self, Dtype::I32 | Dtype::I64)
    }

    /// The safetensors header spelling (`"BF16"`, `"F8_E4M3"`, ...).
    pub fn safetensors_name(self) -> &'static str {
        match self {
            Dtype::F32 => "F32",
            Dtype::F16 => "F16",
            Dtype::BF16 => "BF16",
            Dtype::F8E4M3 => "F8_E4M3",
            Dtype::F8E5M2 => "F8_E5M2",
            Dtype::I32 => "I32",
            Dtype::I64 => "I64",
        }
    }
}

impl std::fmt::Display for Dtype {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.safetensors_name())
    }
}
