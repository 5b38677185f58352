//! The loader's one error type. Every variant names the tensor(s) involved and
//! the numbers (expected vs got), so a refused checkpoint says exactly why.

use qwgpu_checkpoint::Dtype;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    #[error(transparent)]
    Checkpoint(#[from] qwgpu_checkpoint::CheckpointError),
    /// A [`crate::stream_model`] visitor stopped the walk (its own error says why).
    #[error("loading stopped by the consumer: {detail}")]
    Visitor { detail: String },
    /// [`crate::pack_part`] was asked for a part the model does not have.
    #[error("part {part} asked of this model: {detail}")]
    NoSuchPart { part: String, detail: String },

    /// Raw bytes do not match `dtype × shape`.
    #[error("tensor `{tensor}`: {bytes} bytes, expected {expected} ({dtype} × shape {shape:?})")]
    ByteLength {
        tensor: String,
        dtype: Dtype,
        shape: Vec<usize>,
        bytes: usize,
        expected: usize,
    },

    /// Element count or byte size overflows `usize`.
    #[error("tensor `{tensor}`: shape {shape:?} overflows")]
    ShapeOverflow { tensor: String, shape: Vec<usize> },

    /// Shape does not fit the tensor's role.
    #[error("tensor `{tensor}`: shape {got:?}, expected {expected}")]
    Shape {
        tensor: String,
        got: Vec<usize>,
        expected: String,
    },

    /// Dtype not allowed for the tensor's role.
    #[error("tensor `{tensor}`: dtype {dtype} is not allowed here (expected {expected})")]
    Dtype {
        tensor: String,
        dtype: Dtype,
        expected: String,
    },

    /// Required tensors absent (all of them listed).
    #[error("missing tensor(s): {}", names.join(", "))]
    MissingTensors { names: Vec<String> },

    /// An FP8 weight without any scale companion.
    #[error("FP8 weight `{tensor}` ({dtype}) has no scale; looked for {looked_for}{note}", looked_for = looked_for.join(", "))]
    MissingScale {
        tensor: String,
        dtype: Dtype,
        looked_for: Vec<String>,
        /// Extra context (e.g. that the config has no `quantization_config`), or empty.
        note: String,
    },

    /// An FP8 weight element that encodes NaN or infinity (checked under strict loading).
    #[error("FP8 weight `{tensor}` ({dtype}): element {index} is byte {byte:#04x}, a NaN/infinity encoding")]
    NonFiniteWeight {
        tensor: String,
        dtype: Dtype,
        index: usize,
        byte: u8,
    },

    /// An error about checkpoint tensors, with where they are in the files
    /// (their own names, e.g. `model.language_model.…`, and shard files).
    #[error("{source} [in the checkpoint: {origin}]")]
    InFile {
        #[source]
        source: Box<LoadError>,
        origin: String,
    },

    /// Two alternative scale tensors for one weight.
    #[error("weight `{tensor}` has two scale tensors, `{first}` and `{second}`; expected one")]
    AmbiguousScale {
        tensor: String,
        first: String,
        second: String,
    },

    /// A scale whose shape fits no scheme.
    #[error(
        "scale `{scale}` of weight `{weight}` (covering {covers} shard(s)): shape {shape:?} fits no scheme; \
         acceptable: {acceptable}"
    )]
    ScaleShape {
        scale: String,
        weight: String,
        covers: usize,
        shape: Vec<usize>,
        /// The acceptable shapes, spelled out for this weight.
        acceptable: String,
    },

    /// A 2-D block scale whose grid does not match the weight and block size.
    #[error(
        "block scale `{scale}` of weight `{weight}` {weight_shape:?}: grid {got:?}, expected {expected:?} \
         for block [{block_0}, {block_1}]",
        block_0 = block[0],
        block_1 = block[1]
    )]
    BlockGrid {
        scale: String,
        weight: String,
        weight_shape: [usize; 2],
        block: [usize; 2],
        got: [usize; 2],
        expected: [usize; 2],
    },

    /// A scale value that is NaN, infinite or not positive.
    #[error("scale `{tensor}`: element {index} is {value}; scales must be finite and > 0")]
    ScaleValue {
        tensor: String,
        index: usize,
        value: f32,
    },

    /// A scale stored in a dtype other than F32/BF16/F16.
    #[error("scale `{tensor}`: dtype {dtype} not supported (expected F32, BF16 or F16)")]
    ScaleDtype { tensor: String, dtype: Dtype },

    /// A scale attached to a weight stored unquantized.
    #[error("scale `{scale}` belongs to weight `{weight}`, which is stored unquantized ({dtype})")]
    ScaleOnUnquantized {
        scale: String,
        weight: String,
        dtype: Dtype,
    },

    /// The config says a module is not quantized, but the file stores it as FP8.
    #[error("weight `{tensor}` is stored as {dtype}, but the quantization config {reason}")]
    QuantizedButExcluded {
        tensor: String,
        dtype: Dtype,
        reason: String,
    },

    /// The FP8 format of a weight differs from the config's `fmt`.
    #[error(
        "weight `{tensor}` is stored as {dtype}, but the quantization config says {configured}"
    )]
    Fp8FormatMismatch {
        tensor: String,
        dtype: Dtype,
        configured: String,
    },

    /// The scale scheme found in the file is not the configured one.
    #[error("weight `{tensor}`: file has a {found} scale, but the quantization config says {configured}")]
    SchemeMismatch {
        tensor: String,
        found: String,
        configured: String,
    },

    /// A packed module made of quantized and unquantized tensors.
    #[error(
        "packed weight `{packed}` is partly quantized: `{quantized}` is {quantized_dtype}, \
         `{unquantized}` is {unquantized_dtype}"
    )]
    PartlyQuantized {
        packed: String,
        quantized: String,
        quantized_dtype: Dtype,
        unquantized: String,
        unquantized_dtype: Dtype,
    },

    /// Sources of one packed weight stored in different dtypes.
    #[error(
        "packed weight `{packed}`: `{first}` is {first_dtype} but `{second}` is {second_dtype}"
    )]
    MixedDtypes {
        packed: String,
        first: String,
        first_dtype: Dtype,
        second: String,
        second_dtype: Dtype,
    },

    /// Sources of one packed weight with incompatible scale schemes.
    #[error("packed weight `{packed}`: `{first}` has {first_scheme} scales but `{second}` has {second_scheme}")]
    MixedSchemes {
        packed: String,
        first: String,
        first_scheme: String,
        second: String,
        second_scheme: String,
    },

    /// A source covering a shard name the packed weight does not declare.
    #[error("packed weight `{packed}`: tensor `{tensor}` covers unknown shard `{shard}` (declared: {declared})", declared = declared.join(", "))]
    UnknownShard {
        packed: String,
        tensor: String,
        shard: String,
        declared: Vec<String>,
    },

    /// Two sources (or one source twice) covering the same shard.
    #[error(
        "packed weight `{packed}`: shard `{shard}` loaded twice (from `{first}` and `{second}`)"
    )]
    ShardLoadedTwice {
        packed: String,
        shard: String,
        first: String,
        second: String,
    },

    /// Declared shards no source covered.
    #[error("packed weight `{packed}`: shard(s) never loaded: {shards}", shards = shards.join(", "))]
    ShardNotLoaded { packed: String, shards: Vec<String> },

    /// A source's shards are not consecutive, in order, in the shard table.
    #[error(
        "packed weight `{packed}`: tensor `{tensor}` covers shards [{covers}], which are not consecutive in the shard table [{declared}]",
        covers = covers.join(", "),
        declared = declared.join(", ")
    )]
    ShardOrder {
        packed: String,
        tensor: String,
        covers: Vec<String>,
        declared: Vec<String>,
    },

    /// A shard table that cannot describe a weight (empty, zero rows, duplicate names).
    #[error("packed weight `{packed}`: invalid shard table: {detail}")]
    ShardTable { packed: String, detail: String },

    /// A source's row count differs from the shards it covers.
    #[error("packed weight `{packed}`: tensor `{tensor}` has {rows} rows, but its shards [{covers}] need {expected}", covers = covers.join(", "))]
    RowsMismatch {
        packed: String,
        tensor: String,
        rows: usize,
        expected: usize,
        covers: Vec<String>,
    },

    /// A source's column count differs from the packed weight's.
    #[error("packed weight `{packed}`: tensor `{tensor}` has {cols} columns, expected {expected}")]
    ColsMismatch {
        packed: String,
        tensor: String,
        cols: usize,
        expected: usize,
    },

    /// Some sources of a statically-quantized packed weight carry an `input_scale`, others none.
    #[error("weight `{tensor}` has no input_scale, but {reason}")]
    MissingInputScale { tensor: String, reason: String },

    /// A packed weight whose fields are inconsistent (only from hand-built values).
    #[error("packed weight `{name}` is inconsistent: {detail}")]
    InvalidPacked { name: String, detail: String },

    /// MoE experts stored in both the fused and per-expert layouts.
    #[error("mixed MoE expert layouts: {detail}")]
    MixedExpertLayouts { detail: String },

    /// A per-expert tensor with an id `>= num_experts`.
    #[error("tensor `{tensor}`: expert id {expert} out of range (num_experts = {num_experts})")]
    ExpertOutOfRange {
        tensor: String,
        expert: usize,
        num_experts: usize,
    },

    /// KV-cache scales expected by the config or partly present.
    #[error("layer {layer}: KV-cache scales: {detail}")]
    KvScales { layer: usize, detail: String },

    /// A quantization config this loader cannot honour (unsupported scheme, bad regex).
    #[error("quantization config: {detail}")]
    Quantization { detail: String },

    /// A 4-bit weight whose tensors do not fit its format (packing shapes,
    /// missing zeros or scales, group size, `g_idx`, zero points).
    #[error("4-bit {format} weight `{tensor}`: {detail}")]
    Int4 {
        tensor: String,
        format: String,
        detail: String,
    },

    /// 4-bit tensors where the quantization config says the module is not
    /// quantized (or there is no 4-bit config at all).
    #[error("tensor `{tensor}` holds 4-bit weights, but the quantization config {reason}")]
    Int4Unexpected { tensor: String, reason: String },

    /// The token embedding must be stored unquantized.
    #[error("embedding `{tensor}` is quantized ({dtype}); embeddings must be F32, F16 or BF16")]
    EmbeddingQuantized { tensor: String, dtype: Dtype },
}

impl LoadError {
    /// The error itself, without the [`LoadError::InFile`] location wrapper.
    pub fn root(&self) -> &LoadError {
        match self {
            LoadError::InFile { source, .. } => source.root(),
            other => other,
        }
    }
}
