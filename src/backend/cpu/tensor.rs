//! The fast backend's tensor: f32, or f64 for primal states.
//!
//! Where the integrand of the attribution is sharp (an attention pattern about to flip between
//! two quadrature nodes), the Jacobian at a node changes fast with the primal state, and the
//! rounding of an f32 primal — GEMM sums over 768 or 3072 terms, one rounding per stored
//! activation — is amplified into the attributions: 3e-4 of max|A| on all-mpnet-base-v2 at
//! layer 6, against 2e-7 with f64 primal states and f32 tangents (measured on the reference
//! with the tangents rounded to f32; docs/correctness.md, "Real models and the f64 primal"). The primal is one row per token and
//! step against one per token, step and tangent direction, so keeping it in f64 costs little;
//! the tangents, whose errors are not amplified, stay f32.
//!
//! Each op picks its path from its operands: an f64 primal operand runs the f64 primal code
//! (`primal_f64`), and the f32 tangent kernels read f32 copies of the primal quantities they
//! need. Parameters are f32 as the checkpoint stores them.

use std::borrow::Cow;
use std::ops::Deref;

use crate::params::HostTensor;

#[derive(Clone)]
pub enum CpuTensor {
    /// Uploaded model data: weights, biases, tables, the score bias, the key mask. A loaded
    /// weight is the host tensor itself (`upload_host`): read in place from the mapped
    /// checkpoint, never copied.
    Param(HostTensor),
    /// Tangents, and primal states when the backend keeps its primal in f32.
    F32(Vec<f32>),
    /// Primal states when the backend keeps its primal in f64.
    F64(Vec<f64>),
}

impl std::fmt::Debug for CpuTensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self {
            CpuTensor::Param(_) => "Param",
            CpuTensor::F32(_) => "F32",
            CpuTensor::F64(_) => "F64",
        };
        write!(f, "CpuTensor::{kind}({} values)", self.len())
    }
}

impl CpuTensor {
    pub fn len(&self) -> usize {
        match self {
            CpuTensor::Param(t) => t.data().len(),
            CpuTensor::F32(v) => v.len(),
            CpuTensor::F64(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The f64 data, if this is an f64 primal.
    pub fn as_f64(&self) -> Option<&[f64]> {
        match self {
            CpuTensor::F64(v) => Some(v),
            _ => None,
        }
    }

    /// The values in f32: borrowed, or rounded from f64 for a kernel that reads f32.
    pub fn to_f32(&self) -> Cow<'_, [f32]> {
        match self {
            CpuTensor::Param(t) => Cow::Borrowed(t.data()),
            CpuTensor::F32(v) => Cow::Borrowed(v),
            CpuTensor::F64(v) => Cow::Owned(v.iter().map(|&x| x as f32).collect()),
        }
    }

    /// The values in f64: borrowed, or widened from f32.
    pub fn to_f64(&self) -> Cow<'_, [f64]> {
        match self {
            CpuTensor::Param(_) | CpuTensor::F32(_) => Cow::Owned(self.iter().map(|&x| x as f64).collect()),
            CpuTensor::F64(v) => Cow::Borrowed(v),
        }
    }
}

/// The f32 data of a parameter or tangent, which is what the f32 kernels and the parameter
/// structs (`Linear`, `Norm`) read. The network description decides which operand is which, so
/// an f64 primal here is a bug in the backend, like a shape mismatch.
impl Deref for CpuTensor {
    type Target = [f32];

    fn deref(&self) -> &[f32] {
        match self {
            CpuTensor::Param(t) => t.data(),
            CpuTensor::F32(v) => v,
            CpuTensor::F64(_) => panic!("cpu: an f64 primal tensor where f32 data was expected"),
        }
    }
}
