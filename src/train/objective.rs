//! The training objectives, on the host in f64: the squared error between a pair's score and
//! its label, averaged over the batch. `Cos` is sentence-transformers' `CosineSimilarityLoss`
//! (an MSE on the cosine); `Dot` the same on the dot product, for models explained with `dot`.

use std::str::FromStr;

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Objective {
    Cos,
    Dot,
}

impl Objective {
    pub fn name(self) -> &'static str {
        match self {
            Objective::Cos => "cos",
            Objective::Dot => "dot",
        }
    }

    /// The pair's score, and its gradients with respect to `u` and `v`.
    pub fn score_with_grad(self, u: &[f64], v: &[f64]) -> (f64, Vec<f64>, Vec<f64>) {
        let dot: f64 = u.iter().zip(v).map(|(a, b)| a * b).sum();
        match self {
            Objective::Dot => (dot, v.to_vec(), u.to_vec()),
            Objective::Cos => {
                let (nu, nv) = (norm(u), norm(v));
                // PyTorch's cosine_similarity clamps the product of the norms at 1e-8.
                let denominator = (nu * nv).max(1e-8);
                let cos = dot / denominator;
                let d = |x: &[f64], y: &[f64], nx: f64| -> Vec<f64> {
                    let self_term = if nu * nv > 1e-8 { cos / (nx * nx) } else { 0.0 };
                    y.iter().zip(x).map(|(b, a)| b / denominator - self_term * a).collect()
                };
                (cos, d(u, v, nu), d(v, u, nv))
            }
        }
    }

    /// The mean squared error of a batch of `(u, v, label)` and the gradient of that mean with
    /// respect to each `u` and `v`; also each pair's score.
    pub fn batch_loss(self, pairs: &[(&[f64], &[f64], f64)]) -> BatchLoss {
        let n = pairs.len().max(1) as f64;
        let mut out = BatchLoss { loss: 0.0, scores: vec![], d_u: vec![], d_v: vec![] };
        for &(u, v, label) in pairs {
            let (score, du, dv) = self.score_with_grad(u, v);
            let error = score - label;
            out.loss += error * error / n;
            let weight = 2.0 * error / n;
            out.scores.push(score);
            out.d_u.push(du.iter().map(|g| g * weight).collect());
            out.d_v.push(dv.iter().map(|g| g * weight).collect());
        }
        out
    }
}

pub struct BatchLoss {
    pub loss: f64,
    pub scores: Vec<f64>,
    pub d_u: Vec<Vec<f64>>,
    pub d_v: Vec<Vec<f64>>,
}

fn norm(x: &[f64]) -> f64 {
    x.iter().map(|a| a * a).sum::<f64>().sqrt()
}

impl FromStr for Objective {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "cos" => Ok(Objective::Cos),
            "dot" => Ok(Objective::Dot),
            other => Err(Error::argument("--objective", format!("`{other}` (expected cos or dot)"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosine_gradient_matches_finite_differences() {
        let (u, v) = (vec![0.3, -1.2, 0.7, 2.0], vec![1.1, 0.4, -0.9, 0.5]);
        let (_, du, _) = Objective::Cos.score_with_grad(&u, &v);
        for i in 0..u.len() {
            let eps = 1e-6;
            let mut plus = u.clone();
            plus[i] += eps;
            let mut minus = u.clone();
            minus[i] -= eps;
            let fd = (Objective::Cos.score_with_grad(&plus, &v).0 - Objective::Cos.score_with_grad(&minus, &v).0)
                / (2.0 * eps);
            assert!((fd - du[i]).abs() < 1e-8, "d cos / d u[{i}]: {} vs {fd}", du[i]);
        }
    }

    #[test]
    fn batch_loss_is_the_mean_squared_error() {
        let (u, v) = (vec![1.0, 0.0], vec![1.0, 1.0]);
        let out = Objective::Dot.batch_loss(&[(&u, &v, 0.5), (&v, &v, 1.0)]);
        // dot scores 1 and 2: ((1 − 0.5)² + (2 − 1)²) / 2.
        assert!((out.loss - 0.625).abs() < 1e-15);
        assert_eq!(out.d_u[0], vec![0.5, 0.5]);
    }
}
