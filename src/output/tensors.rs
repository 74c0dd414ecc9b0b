//! `explain --jacobians FILE` and `--feature-pairs FILE`: the integrated Jacobians of both
//! texts, and the feature-pair attributions, as safetensors for NumPy, PyTorch or any
//! safetensors reader.
//!
//! Tensors (f64, row-major): `J_a` `[D, T_a, H]` and `J_b` `[D, T_b, H]`, the integrated
//! Jacobian `Σ_k w_k ∂e(h_r + α_k Δ)/∂h` of the pooled embedding `e` with respect to the input
//! of the attributed layer; `delta_a` `[T_a, H]` and `delta_b` `[T_b, H]`, `Δ = h(x) − h(r)`. So
//! `P[d, i] = Σ_h J[d, i, h] Δ[i, h]` and `A = P_aᵀ P_b` (divided by |e(a)||e(b)| for cos). The
//! feature-pair file holds `feature_pairs` `[T_a, H, T_b, H]` (`attribution::feature_pairs`).
//! The metadata (strings) of both holds the tokens (JSON arrays) and the settings.

use std::collections::HashMap;

use safetensors::tensor::{Dtype, TensorView};

use crate::attribution::{Explanation, Jacobian};
use crate::error::{Error, Result};

/// The largest Jacobians or feature-pairs file `explain` writes (4 GiB); larger requests are
/// refused before any work starts.
pub const MAX_FILE_BYTES: usize = 4 << 30;

/// Bytes of the Jacobians file for texts of `tokens_a` and `tokens_b` tokens (tensors only).
pub fn jacobians_bytes(dim: usize, width: usize, tokens_a: usize, tokens_b: usize) -> usize {
    8 * (dim * width + width) * (tokens_a + tokens_b)
}

/// Bytes of the feature-pairs file (tensor only).
pub fn feature_pairs_bytes(width: usize, tokens_a: usize, tokens_b: usize) -> usize {
    8 * tokens_a * width * tokens_b * width
}

/// The safetensors file of `e`'s feature pairs (`[T_a, H, T_b, H]`, `values`).
pub fn feature_pairs_safetensors(e: &Explanation, values: &[f64], settings: &[(&str, String)]) -> Result<Vec<u8>> {
    let width = e.a.jacobian.as_ref().map_or(e.a.dim, |j| j.width);
    let shape = vec![e.a.tokens(), width, e.b.tokens(), width];
    serialize(vec![("feature_pairs".to_string(), shape, f64_bytes(values))], e, settings)
}

/// f64 values as little-endian bytes, the layout of a safetensors F64 tensor.
pub(crate) fn f64_bytes(values: &[f64]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// One safetensors file of f64 `tensors`, its metadata the explanation's tokens and settings.
fn serialize(
    tensors: Vec<(String, Vec<usize>, Vec<u8>)>,
    e: &Explanation,
    settings: &[(&str, String)],
) -> Result<Vec<u8>> {
    let views = tensors
        .iter()
        .map(|(name, shape, data)| TensorView::new(Dtype::F64, shape.clone(), data).map(|v| (name.clone(), v)))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|err| Error::Internal(format!("safetensors: {err}")))?;
    let mut metadata: HashMap<String, String> = settings.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    let json = |tokens: &[String]| serde_json::to_string(tokens).unwrap_or_default();
    metadata.insert("tokens_a".into(), json(&e.a.tokenized.tokens));
    metadata.insert("tokens_b".into(), json(&e.b.tokenized.tokens));
    metadata.insert("mode".into(), e.mode.name().into());
    metadata.insert("layer".into(), e.layer.to_string());
    metadata.insert("steps".into(), e.quadrature.steps().to_string());
    metadata.insert("quadrature".into(), e.quadrature.name().into());
    safetensors::tensor::serialize(views, Some(metadata)).map_err(|err| Error::Internal(format!("safetensors: {err}")))
}

/// The safetensors file of `e`'s Jacobians, with `settings` added to the metadata.
pub fn jacobians_safetensors(e: &Explanation, settings: &[(&str, String)]) -> Result<Vec<u8>> {
    let missing = || Error::Internal("the explanation kept no Jacobians (reverse mode with keep_jacobian)".into());
    let (ja, jb) = (e.a.jacobian.as_ref().ok_or_else(missing)?, e.b.jacobian.as_ref().ok_or_else(missing)?);
    let tensors: Vec<(String, Vec<usize>, Vec<u8>)> = [("a", ja, e.a.tokens()), ("b", jb, e.b.tokens())]
        .into_iter()
        .flat_map(|(name, j, t): (&str, &Jacobian, usize)| {
            [
                (format!("J_{name}"), vec![e.a.dim, t, j.width], f64_bytes(&j.values)),
                (format!("delta_{name}"), vec![t, j.width], f64_bytes(&j.delta)),
            ]
        })
        .collect();
    serialize(tensors, e, settings)
}
