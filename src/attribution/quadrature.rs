//! Quadrature rules for `∫_0^1 f(α) dα` along the straight path from the reference to the
//! input. `--steps N` is the number of model evaluations for every rule, so that rules are
//! compared at equal cost:
//!
//! | rule | nodes `α_k` | weights `w_k` | exact for polynomials of degree |
//! |---|---|---|---|
//! | `riemann-right` | `k/N`, `k = 1..N` | `1/N` | 0 (error O(1/N)); reproduces xsbert |
//! | `trapezoid` | `k/(N−1)`, `k = 0..N−1` (N − 1 intervals, both ends evaluated) | `1/(N−1)`, halved at the ends | 1 (error O(1/N²)) |
//! | `gauss-legendre` | the roots of the Legendre polynomial `P_N`, mapped from [−1, 1] to [0, 1] | Gauss's, halved by the map | 2N − 1 |
//! | `gauss-legendre-adaptive` | Gauss–Legendre on panels fitted to the text's path, sharp features in narrow panels (`adaptive.rs`) | Gauss's, scaled to the panel | 2 (2N − 1 below 5 steps: plain Gauss–Legendre) |
//!
//! Every rule's weights sum to 1 (Captum's trapezoid sums to 1 − 1/N; this one does not).
//! Gauss–Legendre nodes and weights are computed here in f64 by Newton's method on the
//! three-term recurrence, node by node. The adaptive rule's nodes depend on the text, so
//! every rule hands out its nodes through `Quadrature::nodes`, with a probe of the text's path
//! that only the adaptive rule calls.

use std::f64::consts::PI;

use crate::attribution::adaptive::{self, PathProbe, MIN_STEPS};
use crate::error::{Error, Result};

/// Which rule, as `--rule` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    RiemannRight,
    Trapezoid,
    GaussLegendre,
    GaussLegendreAdaptive,
}

impl Rule {
    pub const ALL: [Rule; 4] = [Rule::RiemannRight, Rule::Trapezoid, Rule::GaussLegendre, Rule::GaussLegendreAdaptive];

    pub fn name(self) -> &'static str {
        match self {
            Rule::RiemannRight => "riemann-right",
            Rule::Trapezoid => "trapezoid",
            Rule::GaussLegendre => "gauss-legendre",
            Rule::GaussLegendreAdaptive => "gauss-legendre-adaptive",
        }
    }

    /// The highest polynomial degree the rule integrates exactly with `steps` nodes.
    pub fn exact_degree(self, steps: usize) -> usize {
        match self {
            Rule::RiemannRight => 0,
            Rule::Trapezoid => 1,
            Rule::GaussLegendre => 2 * steps - 1,
            Rule::GaussLegendreAdaptive if steps < MIN_STEPS => 2 * steps - 1,
            // Where the path is a cubic its Hermite model is exact, and so is every panel of two
            // or more nodes; beyond that the panels are as good as the survey resolves.
            Rule::GaussLegendreAdaptive => 2,
        }
    }
}

impl std::str::FromStr for Rule {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Rule::ALL.into_iter().find(|rule| rule.name() == s).ok_or_else(|| {
            Error::argument(
                "--rule",
                format!("`{s}` (expected riemann-right, trapezoid, gauss-legendre or gauss-legendre-adaptive)"),
            )
        })
    }
}

/// A rule with its number of model evaluations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quadrature {
    rule: Rule,
    steps: usize,
}

/// One node of a rule: where on the path, and with what weight.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Node {
    pub alpha: f64,
    pub weight: f64,
}

/// More steps than this gain nothing: at 10⁵ the right Riemann rule's error is ~10⁻⁵ of the
/// integral, below what f32 accumulation of that many terms keeps.
pub const MAX_STEPS: usize = 100_000;

/// Gauss–Legendre beyond this many nodes is exact far below f32 rounding for any integrand
/// smooth enough to gain from it, and each node costs O(N) to find.
pub const MAX_GAUSS_LEGENDRE_STEPS: usize = 1000;

impl Quadrature {
    /// `rule` with `steps` model evaluations; errors name `--steps`.
    pub fn new(rule: Rule, steps: usize) -> Result<Self> {
        let (least, most) = match rule {
            Rule::RiemannRight => (1, MAX_STEPS),
            // Two ends: one interval.
            Rule::Trapezoid => (2, MAX_STEPS),
            Rule::GaussLegendre | Rule::GaussLegendreAdaptive => (1, MAX_GAUSS_LEGENDRE_STEPS),
        };
        if steps < least {
            return Err(Error::argument("--steps", format!("must be at least {least} for {}", rule.name())));
        }
        if steps > most {
            return Err(Error::argument(
                "--steps",
                format!("{steps} is more than the limit of {most} for {}", rule.name()),
            ));
        }
        Ok(Quadrature { rule, steps })
    }

    pub fn riemann_right(steps: usize) -> Result<Self> {
        Quadrature::new(Rule::RiemannRight, steps)
    }

    pub fn rule(&self) -> Rule {
        self.rule
    }

    pub fn name(&self) -> &'static str {
        self.rule.name()
    }

    pub fn steps(&self) -> usize {
        self.steps
    }

    /// The rule's `steps` nodes for one text, ascending in α. `probe` samples the text's path
    /// (`adaptive::PathProbe`); only the adaptive rule calls it.
    pub fn nodes(&self, probe: &mut PathProbe<'_>) -> Result<Vec<Node>> {
        match self.fixed_nodes() {
            Some(nodes) => Ok(nodes),
            None => adaptive::nodes(self.steps, probe),
        }
    }

    /// The nodes of a rule that does not depend on the text (all but the adaptive one).
    pub fn fixed_nodes(&self) -> Option<Vec<Node>> {
        let n = self.steps;
        match self.rule {
            Rule::RiemannRight => {
                Some((1..=n).map(|k| Node { alpha: k as f64 / n as f64, weight: 1.0 / n as f64 }).collect())
            }
            Rule::Trapezoid => {
                let h = 1.0 / (n - 1) as f64;
                let weight = |k: usize| if k == 0 || k == n - 1 { h / 2.0 } else { h };
                Some((0..n).map(|k| Node { alpha: k as f64 * h, weight: weight(k) }).collect())
            }
            Rule::GaussLegendre => Some(gauss_legendre_unit(n)),
            Rule::GaussLegendreAdaptive => None,
        }
    }
}

/// `n`-point Gauss–Legendre mapped to [0, 1], ascending.
pub(crate) fn gauss_legendre_unit(n: usize) -> Vec<Node> {
    (0..n)
        .map(|k| {
            let (x, w) = gauss_legendre_node(n, k);
            Node { alpha: (1.0 + x) / 2.0, weight: w / 2.0 }
        })
        .collect()
}

/// `(P_n(x), P_n'(x))` by the three-term recurrence `k P_k = (2k−1) x P_{k−1} − (k−1) P_{k−2}`.
fn legendre(n: usize, x: f64) -> (f64, f64) {
    let (mut p_prev, mut p) = (1.0, x);
    for k in 2..=n {
        let k = k as f64;
        (p_prev, p) = (p, ((2.0 * k - 1.0) * x * p - (k - 1.0) * p_prev) / k);
    }
    if n == 0 {
        return (1.0, 0.0);
    }
    // P_n' = n (x P_n − P_{n−1}) / (x² − 1); the roots are interior, so x² ≠ 1.
    (p, n as f64 * (x * p - p_prev) / (x * x - 1.0))
}

/// Root `k` of `P_n` in increasing order on [−1, 1], and its Gauss weight
/// `2 / ((1 − x²) P_n'(x)²)`. Newton's method from Tricomi's estimate of the root, which is
/// close enough for quadratic convergence from the first step at every `n`.
fn gauss_legendre_node(n: usize, k: usize) -> (f64, f64) {
    // Roots descend with i = 1..n in cos(π(i − 1/4)/(n + 1/2)); root k ascending is i = n − k.
    let i = (n - k) as f64;
    let nf = n as f64;
    let theta = PI * (i - 0.25) / (nf + 0.5);
    let mut x = (1.0 - (nf - 1.0) / (8.0 * nf * nf * nf)) * theta.cos();
    for _ in 0..100 {
        let (p, dp) = legendre(n, x);
        let step = p / dp;
        x -= step;
        if step.abs() <= 1e-16 * x.abs().max(1.0) {
            break;
        }
    }
    let (_, dp) = legendre(n, x);
    (x, 2.0 / ((1.0 - x * x) * dp * dp))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `∫_0^1 f` by `rule`, the adaptive rule probing the path `g` (`g' = f`).
    fn integrate_path(rule: &Quadrature, f: impl Fn(f64) -> f64, g: impl Fn(f64) -> f64) -> f64 {
        let mut probe =
            |alphas: &[f64]| Ok((alphas.iter().map(|&a| g(a)).collect(), alphas.iter().map(|&a| f(a)).collect()));
        rule.nodes(&mut probe).unwrap().iter().map(|n| n.weight * f(n.alpha)).sum()
    }

    fn integrate(rule: &Quadrature, f: impl Fn(f64) -> f64) -> f64 {
        rule.fixed_nodes().unwrap().iter().map(|n| n.weight * f(n.alpha)).sum()
    }

    fn nodes_of(rule: &Quadrature) -> Vec<Node> {
        rule.fixed_nodes().unwrap()
    }

    #[test]
    fn riemann_right_integrates_linear_functions_with_known_error() {
        // Right Riemann overestimates ∫ α dα = 1/2 by exactly 1/(2N).
        for steps in [1, 4, 50] {
            let rule = Quadrature::riemann_right(steps).unwrap();
            assert!((integrate(&rule, |a| a) - 0.5 - 0.5 / steps as f64).abs() < 1e-12);
            assert_eq!(nodes_of(&rule)[steps - 1].alpha, 1.0);
        }
    }

    #[test]
    fn every_rule_integrates_polynomials_exactly_up_to_its_degree_and_not_beyond() {
        for rule in Rule::ALL {
            for steps in [2, 3, 5, 10, 20] {
                let q = Quadrature::new(rule, steps).unwrap();
                let nodes = q.nodes(&mut |alphas: &[f64]| Ok((alphas.to_vec(), vec![1.0; alphas.len()]))).unwrap();
                let weights: f64 = nodes.iter().map(|n| n.weight).sum();
                assert!((weights - 1.0).abs() < 1e-14, "{} N={steps}: weights sum to {weights}", rule.name());
                let degree = rule.exact_degree(steps);
                for p in 0..=degree.min(40) {
                    // ∫_0^1 α^p dα = 1/(p+1), with α^p written as ((2α−1+1)/2)^p's monomial.
                    let got = integrate_path(&q, |a| a.powi(p as i32), |a| a.powi(p as i32 + 1) / (p + 1) as f64);
                    let want = 1.0 / (p + 1) as f64;
                    assert!((got - want).abs() < 1e-13, "{} N={steps} degree {p}: {got} vs {want}", rule.name());
                }
                // One degree more is not exact (the rule's degree is sharp). Gauss–Legendre's
                // error there, (N!)⁴ / ((2N+1) ((2N)!)²), drops below rounding beyond N = 5.
                if rule == Rule::GaussLegendre && steps > 5 {
                    continue;
                }
                // The adaptive rule's model of a higher degree's path is only as inexact as
                // the survey leaves it, which may be below rounding.
                if rule == Rule::GaussLegendreAdaptive && steps >= MIN_STEPS {
                    continue;
                }
                let beyond = degree + 1;
                let got =
                    integrate_path(&q, |a| a.powi(beyond as i32), |a| a.powi(beyond as i32 + 1) / (beyond + 1) as f64);
                assert!((got - 1.0 / (beyond + 1) as f64).abs() > 1e-12, "{} N={steps} degree {beyond}", rule.name());
            }
        }
    }

    #[test]
    // The table's digits as printed, some beyond what f64 holds.
    #[allow(clippy::excessive_precision)]
    fn gauss_legendre_nodes_and_weights_equal_the_tables() {
        // Abramowitz & Stegun, Table 25.4, on [−1, 1]: (x, w) for x ≥ 0.
        let tables: [(usize, &[(f64, f64)]); 4] = [
            (2, &[(0.577_350_269_189_625_8, 1.0)]),
            (3, &[(0.0, 0.888_888_888_888_888_9), (0.774_596_669_241_483_4, 0.555_555_555_555_555_6)]),
            (
                4,
                &[
                    (0.339_981_043_584_856_3, 0.652_145_154_862_546_1),
                    (0.861_136_311_594_052_6, 0.347_854_845_137_453_9),
                ],
            ),
            (
                5,
                &[
                    (0.0, 0.568_888_888_888_888_9),
                    (0.538_469_310_105_683_1, 0.478_628_670_499_366_5),
                    (0.906_179_845_938_664_0, 0.236_926_885_056_189_1),
                ],
            ),
        ];
        for (n, table) in tables {
            let q = Quadrature::new(Rule::GaussLegendre, n).unwrap();
            let nodes = nodes_of(&q);
            // The upper half of the nodes, ascending, mapped back to [−1, 1].
            let upper: Vec<(f64, f64)> =
                nodes[n / 2..].iter().map(|node| (2.0 * node.alpha - 1.0, 2.0 * node.weight)).collect();
            assert_eq!(upper.len(), table.len());
            for ((x, w), (tx, tw)) in upper.iter().zip(table) {
                assert!((x - tx).abs() < 1e-14 && (w - tw).abs() < 1e-14, "N={n}: ({x}, {w}) vs ({tx}, {tw})");
            }
            // Symmetric about 1/2.
            for k in 0..n {
                let (a, b) = (nodes[k], nodes[n - 1 - k]);
                assert!((a.alpha + b.alpha - 1.0).abs() < 1e-15 && (a.weight - b.weight).abs() < 1e-15);
            }
        }
    }

    #[test]
    fn gauss_legendre_stays_accurate_at_its_limit() {
        let q = Quadrature::new(Rule::GaussLegendre, MAX_GAUSS_LEGENDRE_STEPS).unwrap();
        let nodes = nodes_of(&q);
        let weights: f64 = nodes.iter().map(|n| n.weight).sum();
        assert!((weights - 1.0).abs() < 1e-13, "{weights}");
        assert!(nodes.windows(2).all(|w| w[0].alpha < w[1].alpha), "nodes ascend");
        assert!((integrate(&q, |a| (3.0 * a).cos()) - (3.0f64).sin() / 3.0).abs() < 1e-13);
    }

    #[test]
    fn bad_step_counts_are_argument_errors() {
        let err = Quadrature::riemann_right(0).unwrap_err().to_string();
        assert!(err.contains("--steps"), "{err}");
        let err = Quadrature::riemann_right(99_999_999_999).unwrap_err().to_string();
        assert!(err.contains("--steps") && err.contains(&MAX_STEPS.to_string()), "{err}");
        assert!(Quadrature::riemann_right(MAX_STEPS).is_ok());
        let err = Quadrature::new(Rule::Trapezoid, 1).unwrap_err().to_string();
        assert!(err.contains("--steps") && err.contains("trapezoid"), "{err}");
        let err = Quadrature::new(Rule::GaussLegendre, MAX_GAUSS_LEGENDRE_STEPS + 1).unwrap_err().to_string();
        assert!(err.contains("gauss-legendre"), "{err}");
        assert!("simpson".parse::<Rule>().unwrap_err().to_string().contains("--rule"));
    }
}
