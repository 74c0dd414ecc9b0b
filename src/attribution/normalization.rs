//! `--similarity cos-exact` attributes `n = e/|e|` rather than `e`. Along the path the Jacobian
//! of the normalization at the pooled embedding `e_k` of node `k` is
//! `N_k = (I − n_k n_kᵀ) / |e_k|` (symmetric), so the pooled tangents of forward mode become
//! `N_k ė` and the unit cotangents of reverse mode `N_k e_d`. Both are computed on the host in
//! f64: per node and direction they are one vector of width `D`, against the whole pass through
//! the layers that made them.

use crate::error::{Error, Result};

/// `v / |v|`, or the error cos-exact gives where the embedding is zero (`what` names it).
pub fn normalized(v: &[f64], what: &str) -> Result<Vec<f64>> {
    let norm = nonzero_norm(v, what)?;
    Ok(v.iter().map(|x| x / norm).collect())
}

/// `|v|`, or the error cos-exact gives where the embedding is zero (`what` names it).
pub fn nonzero_norm(v: &[f64], what: &str) -> Result<f64> {
    let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
    if norm > 0.0 && norm.is_finite() {
        return Ok(norm);
    }
    Err(Error::argument(
        "--similarity",
        format!(
            "cos-exact is undefined where the embedding is 0, and {what} is (an exact model's reference \\
             embeds to 0 by design: use cos or dot)"
        ),
    ))
}

/// `N v = (v − n (n·v)) / |e|` with `n = e/|e|`.
pub fn apply_jacobian(e: &[f64], v: &[f64]) -> Vec<f64> {
    let norm = e.iter().map(|x| x * x).sum::<f64>().sqrt();
    let along: f64 = e.iter().zip(v).map(|(e, v)| e * v).sum::<f64>() / (norm * norm);
    v.iter().zip(e).map(|(v, e)| (v - e * along) / norm).collect()
}

/// Pooled tangents `[steps · directions, D]` (rows of node `k` first) mapped by `N_k`, with
/// `node_embeddings` `[steps, D]`.
pub fn tangents(pooled: &[f64], node_embeddings: &[f64], directions: usize, width: usize) -> Vec<f32> {
    pooled
        .chunks_exact(width)
        .enumerate()
        .flat_map(|(row, v)| {
            let k = row / directions;
            apply_jacobian(&node_embeddings[k * width..(k + 1) * width], v)
        })
        .map(|x| x as f32)
        .collect()
}

/// Reverse mode's seeds `[steps, dims, D]`: row `(k, c)` is `N_k e_{dims.start + c}`.
pub fn seeds(node_embeddings: &[f64], dims: std::ops::Range<usize>, width: usize) -> Vec<f32> {
    let mut rows = Vec::with_capacity(node_embeddings.len() / width * dims.len() * width);
    for e in node_embeddings.chunks_exact(width) {
        for d in dims.clone() {
            let mut unit = vec![0.0; width];
            unit[d] = 1.0;
            rows.extend(apply_jacobian(e, &unit).into_iter().map(|x| x as f32));
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `N` is the derivative of `e/|e|`: central differences in f64 agree to 1e-9.
    #[test]
    fn the_jacobian_is_the_derivative_of_the_normalization() {
        let e = [0.3, -1.2, 2.0, 0.7];
        let v = [1.0, 0.5, -0.25, 2.0];
        let n = |x: &[f64]| normalized(x, "test").unwrap();
        let h = 1e-6;
        let plus: Vec<f64> = e.iter().zip(&v).map(|(e, v)| e + h * v).collect();
        let minus: Vec<f64> = e.iter().zip(&v).map(|(e, v)| e - h * v).collect();
        let fd: Vec<f64> = n(&plus).iter().zip(n(&minus)).map(|(p, m)| (p - m) / (2.0 * h)).collect();
        for (got, want) in apply_jacobian(&e, &v).iter().zip(&fd) {
            assert!((got - want).abs() < 1e-9, "{got} vs {want}");
        }
        // Symmetric: seeds (Nᵀ e_d) and tangents (N v) agree, ⟨N v, e_d⟩ = ⟨v, N e_d⟩.
        let seeds = seeds(&e, 0..4, 4);
        for d in 0..4 {
            let row = &seeds[d * 4..(d + 1) * 4];
            let left = apply_jacobian(&e, &v)[d];
            let right: f64 = row.iter().zip(&v).map(|(s, v)| *s as f64 * v).sum();
            assert!((left - right).abs() < 1e-6, "{left} vs {right}");
        }
    }

    #[test]
    fn a_zero_embedding_is_a_named_error() {
        let err = normalized(&[0.0; 4], "the reference of text A").unwrap_err().to_string();
        assert!(
            err.contains("--similarity") && err.contains("cos-exact") && err.contains("reference of text A"),
            "{err}"
        );
    }
}
