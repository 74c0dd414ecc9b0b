//! Quadrature rules for `∫_0^1 f(α) dα` along the straight path from the reference to the
//! input. Only the right Riemann rule exists today, the one xsbert uses; trapezoid and
//! Gauss–Legendre join as further variants (roadmap item 5).

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quadrature {
    /// `α_k = k/N`, `w_k = 1/N`, `k = 1..N`: reproduces xsbert exactly, converges as O(1/N).
    RiemannRight { steps: usize },
}

/// One node of a rule: where on the path, and with what weight.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Node {
    pub alpha: f64,
    pub weight: f64,
}

impl Quadrature {
    pub fn riemann_right(steps: usize) -> Result<Self> {
        if steps == 0 {
            return Err(Error::argument("--steps", "must be at least 1"));
        }
        Ok(Quadrature::RiemannRight { steps })
    }

    pub fn name(&self) -> &'static str {
        match self {
            Quadrature::RiemannRight { .. } => "riemann-right",
        }
    }

    pub fn steps(&self) -> usize {
        match *self {
            Quadrature::RiemannRight { steps } => steps,
        }
    }

    pub fn nodes(&self) -> Vec<Node> {
        match *self {
            Quadrature::RiemannRight { steps } => (1..=steps)
                .map(|k| Node { alpha: k as f64 / steps as f64, weight: 1.0 / steps as f64 })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn riemann_right_integrates_linear_functions_with_known_error() {
        // Right Riemann overestimates ∫ α dα = 1/2 by exactly 1/(2N).
        for steps in [1, 4, 50] {
            let rule = Quadrature::riemann_right(steps).unwrap();
            let integral: f64 = rule.nodes().iter().map(|n| n.weight * n.alpha).sum();
            assert!((integral - 0.5 - 0.5 / steps as f64).abs() < 1e-12);
            assert_eq!(rule.nodes().last().unwrap().alpha, 1.0);
        }
    }

    #[test]
    fn zero_steps_is_an_argument_error() {
        let err = Quadrature::riemann_right(0).unwrap_err().to_string();
        assert!(err.contains("--steps"), "{err}");
    }
}
