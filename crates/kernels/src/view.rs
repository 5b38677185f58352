//! Typed views of tensors in GPU buffers: buffer, element offset, shape
//! `[rows, cols]`, row stride and element type, with one bounds check
//! ([`TensorView::check_shape`]) returning a typed [`ShapeError`] instead of
//! each family's own range arithmetic.

use thiserror::Error;

use crate::KernelError;

/// Element type of a view (every activation buffer holds 4-byte elements).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    F32,
    U32,
}

impl Dtype {
    /// Bytes per element.
    pub fn size(self) -> u64 {
        4
    }
}

/// `shape[0]` rows of `shape[1]` elements of `dtype`, row `i` starting at
/// element `offset + i · stride` of `buffer`.
#[derive(Debug, Clone, Copy)]
pub struct TensorView<'a> {
    pub buffer: &'a wgpu::Buffer,
    /// Element offset of row 0.
    pub offset: u64,
    /// `[rows, cols]`.
    pub shape: [u64; 2],
    /// Elements from one row's start to the next (`>= cols`).
    pub stride: u64,
    pub dtype: Dtype,
}

/// Why a view does not fit its buffer or its kernel.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ShapeError {
    #[error("{tensor} has shape {got:?}, expected {expected:?}")]
    Shape {
        tensor: &'static str,
        got: [u64; 2],
        expected: [u64; 2],
    },
    #[error("{tensor} must be dense (rows {width} elements apart), its stride is {stride}")]
    NotDense {
        tensor: &'static str,
        stride: u64,
        width: u64,
    },
    #[error("{tensor} is {got:?}, expected {expected:?}")]
    Dtype {
        tensor: &'static str,
        got: Dtype,
        expected: Dtype,
    },
    #[error("{tensor} stride {stride} is below its row width {width}")]
    Stride {
        tensor: &'static str,
        stride: u64,
        width: u64,
    },
    #[error(
        "{tensor} needs elements {offset}..{end} ({tensor}: {rows} rows of {width} elements, \
         stride {stride}), past its {bytes} bytes: the view exceeds its buffer"
    )]
    OutOfBounds {
        tensor: &'static str,
        rows: u64,
        width: u64,
        offset: u64,
        stride: u64,
        end: u64,
        bytes: u64,
    },
    #[error("{tensor}: element {end} does not fit 32-bit indices")]
    Index { tensor: &'static str, end: u64 },
    #[error(
        "{tensor} must start at element 0 of its buffer (the kernel takes no offset for it), \
         it starts at {offset}"
    )]
    Offset { tensor: &'static str, offset: u64 },
}

impl ShapeError {
    /// The error of kernel `kernel` that this view made it refuse.
    pub fn in_kernel(self, kernel: &'static str) -> KernelError {
        KernelError::Arguments {
            kernel,
            detail: self.to_string(),
        }
    }
}

/// Checks `rows` rows of `width` elements of `dtype`, `stride` apart from
/// element `offset` of `buffer`, as tensor `tensor` of kernel `kernel`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn check_rows(
    kernel: &'static str,
    tensor: &'static str,
    buffer: &wgpu::Buffer,
    dtype: Dtype,
    offset: u64,
    stride: u64,
    rows: u64,
    width: u64,
) -> Result<(), KernelError> {
    TensorView::rows(buffer, dtype, offset, [rows, width], stride)
        .check_shape(tensor, [rows, width], dtype)
        .map_err(|e| e.in_kernel(kernel))
}

/// Checks `len` consecutive elements of `dtype` from element `offset` of
/// `buffer`, as tensor `tensor` of kernel `kernel`.
pub(crate) fn check_vector(
    kernel: &'static str,
    tensor: &'static str,
    buffer: &wgpu::Buffer,
    dtype: Dtype,
    offset: u64,
    len: u64,
) -> Result<(), KernelError> {
    TensorView::vector(buffer, dtype, offset, len)
        .check_shape(tensor, [1, len], dtype)
        .map_err(|e| e.in_kernel(kernel))
}

impl<'a> TensorView<'a> {
    /// `rows × cols` elements, rows `stride` apart from element `offset`.
    pub fn rows(
        buffer: &'a wgpu::Buffer,
        dtype: Dtype,
        offset: u64,
        [rows, cols]: [u64; 2],
        stride: u64,
    ) -> Self {
        Self {
            buffer,
            offset,
            shape: [rows, cols],
            stride,
            dtype,
        }
    }

    /// `len` consecutive elements from `offset`.
    pub fn vector(buffer: &'a wgpu::Buffer, dtype: Dtype, offset: u64, len: u64) -> Self {
        Self::rows(buffer, dtype, offset, [1, len], len)
    }

    /// `len` u32 words from word `offset` (what [`copy_words`](crate::copy::copy_words) moves).
    pub fn words(buffer: &'a wgpu::Buffer, offset: u32, len: u32) -> Self {
        Self::vector(buffer, Dtype::U32, offset as u64, len as u64)
    }

    /// Dense f32 rows: `rows × cols` from element `offset`, rows `cols` apart.
    pub fn f32_rows(buffer: &'a wgpu::Buffer, offset: u32, rows: u32, cols: u32) -> Self {
        let cols = cols as u64;
        Self::rows(buffer, Dtype::F32, offset as u64, [rows as u64, cols], cols)
    }

    /// Elements in the view.
    pub fn len(&self) -> u64 {
        self.shape[0] * self.shape[1]
    }

    /// Whether the view has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// One past the last element the view covers (its offset when empty).
    pub fn end(&self) -> u64 {
        let [rows, cols] = self.shape;
        match rows {
            0 => self.offset,
            _ => self.offset + (rows - 1) * self.stride + cols,
        }
    }

    /// Checks that the view has shape `expected` (`[rows, cols]`) and
    /// `dtype` elements, that its rows do not overlap (stride at least the row
    /// width), that it lies inside its buffer and that every element index
    /// fits a `u32` (the kernels' indices). `tensor` names it in the error.
    pub fn check_shape(
        &self,
        tensor: &'static str,
        expected: [u64; 2],
        dtype: Dtype,
    ) -> Result<(), ShapeError> {
        if self.shape != expected {
            return Err(ShapeError::Shape {
                tensor,
                got: self.shape,
                expected,
            });
        }
        check(self.layout(), self.buffer.size(), tensor, dtype)
    }

    /// Checks that its rows follow each other with no gap (what kernels that
    /// take one offset, no stride, need).
    pub fn check_dense(&self, tensor: &'static str) -> Result<(), ShapeError> {
        if self.shape[0] > 1 && self.stride != self.shape[1] {
            return Err(ShapeError::NotDense {
                tensor,
                stride: self.stride,
                width: self.shape[1],
            });
        }
        Ok(())
    }

    /// Checks that the view starts at element 0 of its buffer (what kernels
    /// that take no offset for a tensor need).
    pub fn check_origin(&self, tensor: &'static str) -> Result<(), ShapeError> {
        match self.offset {
            0 => Ok(()),
            offset => Err(ShapeError::Offset { tensor, offset }),
        }
    }

    /// [`check_shape`](Self::check_shape) with [`check_dense`](Self::check_dense)
    /// and, with `origin`, [`check_origin`](Self::check_origin), as tensor
    /// `tensor` of kernel `kernel`.
    pub(crate) fn expect(
        &self,
        kernel: &'static str,
        tensor: &'static str,
        shape: [u64; 2],
        dtype: Dtype,
        origin: bool,
    ) -> Result<(), KernelError> {
        self.check_shape(tensor, shape, dtype)
            .and_then(|_| self.check_dense(tensor))
            .and_then(|_| match origin {
                true => self.check_origin(tensor),
                false => Ok(()),
            })
            .map_err(|e| e.in_kernel(kernel))
    }

    fn layout(&self) -> Layout {
        Layout {
            offset: self.offset,
            shape: self.shape,
            stride: self.stride,
            dtype: self.dtype,
        }
    }
}

/// A view without its buffer (so the rule is testable without a device).
#[derive(Debug, Clone, Copy)]
struct Layout {
    offset: u64,
    shape: [u64; 2],
    stride: u64,
    dtype: Dtype,
}

fn check(v: Layout, bytes: u64, tensor: &'static str, dtype: Dtype) -> Result<(), ShapeError> {
    if v.dtype != dtype {
        return Err(ShapeError::Dtype {
            tensor,
            got: v.dtype,
            expected: dtype,
        });
    }
    let [rows, width] = v.shape;
    if v.stride < width {
        return Err(ShapeError::Stride {
            tensor,
            stride: v.stride,
            width,
        });
    }
    let end = match rows {
        0 => v.offset,
        _ => v.offset + (rows - 1) * v.stride + width,
    };
    if end * dtype.size() > bytes {
        return Err(ShapeError::OutOfBounds {
            tensor,
            rows,
            width,
            offset: v.offset,
            stride: v.stride,
            end,
            bytes,
        });
    }
    if end > u32::MAX as u64 {
        return Err(ShapeError::Index { tensor, end });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(offset: u64, shape: [u64; 2], stride: u64) -> Layout {
        Layout {
            offset,
            shape,
            stride,
            dtype: Dtype::F32,
        }
    }

    #[test]
    fn views_inside_their_buffer_pass_and_others_say_why() {
        // 3 rows of 4 at offset 2, stride 5: elements 2..16, 64 bytes.
        let v = layout(2, [3, 4], 5);
        assert_eq!(check(v, 64, "x", Dtype::F32), Ok(()));
        assert_eq!(
            check(v, 60, "x", Dtype::F32),
            Err(ShapeError::OutOfBounds {
                tensor: "x",
                rows: 3,
                width: 4,
                offset: 2,
                stride: 5,
                end: 16,
                bytes: 60,
            })
        );
        assert_eq!(
            check(layout(0, [2, 4], 3), 64, "y", Dtype::F32),
            Err(ShapeError::Stride {
                tensor: "y",
                stride: 3,
                width: 4
            })
        );
        // No rows: nothing is read.
        assert_eq!(check(layout(4, [0, 4], 4), 16, "v", Dtype::F32), Ok(()));
        assert_eq!(
            check(v, 64, "ids", Dtype::U32),
            Err(ShapeError::Dtype {
                tensor: "ids",
                got: Dtype::F32,
                expected: Dtype::U32
            })
        );
        assert_eq!(
            check(
                layout(u32::MAX as u64, [1, 4], 4),
                u64::MAX,
                "x",
                Dtype::F32
            ),
            Err(ShapeError::Index {
                tensor: "x",
                end: u32::MAX as u64 + 4
            })
        );
    }

    #[test]
    fn messages_name_the_tensor_and_the_numbers() {
        let e = check(layout(0, [3, 12], 11), 1 << 20, "x", Dtype::F32).unwrap_err();
        assert_eq!(e.to_string(), "x stride 11 is below its row width 12");
        let e = check(layout(2, [1, 4], 4), 16, "source", Dtype::U32).unwrap_err();
        assert!(e.to_string().starts_with("source"), "{e}");
        let e = check(layout(2, [1, 4], 4), 16, "source", Dtype::F32).unwrap_err();
        assert_eq!(
            e.to_string(),
            "source needs elements 2..6 (source: 1 rows of 4 elements, stride 4), past its 16 \
             bytes: the view exceeds its buffer"
        );
    }

    #[test]
    fn views_of_another_shape_or_with_gaps_are_refused() {
        let t = crate::testing::contexts()[0];
        let buf = t.ctx.storage("b", 256).unwrap();
        let v = TensorView::f32_rows(&buf, 0, 2, 4);
        assert_eq!(
            v.check_shape("v", [2, 5], Dtype::F32),
            Err(ShapeError::Shape {
                tensor: "v",
                got: [2, 4],
                expected: [2, 5]
            })
        );
        assert_eq!(v.check_shape("v", [2, 4], Dtype::F32), Ok(()));
        assert_eq!(v.check_dense("v"), Ok(()));
        let gaps = TensorView::rows(&buf, Dtype::F32, 0, [2, 4], 6);
        assert_eq!(
            gaps.check_dense("g"),
            Err(ShapeError::NotDense {
                tensor: "g",
                stride: 6,
                width: 4
            })
        );
        // copy_words: a destination of another length is a typed error.
        let (src, dst) = (TensorView::words(&buf, 0, 4), TensorView::words(&buf, 8, 5));
        let e = crate::copy::copy_words(&t.ctx, &src, &dst).unwrap_err();
        assert!(e.to_string().contains("destination has shape"), "{e}");
    }
}
