//! `gauss-legendre-adaptive`: composite Gauss–Legendre whose panels are fitted to the text's
//! path before any step is spent.
//!
//! Where the path crosses an attention pattern that flips, or a LayerNorm whose input nearly
//! loses its variance, the embedding changes within a few hundredths of α or far less
//! (all-mpnet-base-v2 at layer 6: about 10% of `e(x) − e(r)` within 5·10⁻⁴ of α;
//! docs/performance.md, "Quadrature: steps per rule"). No fixed rule resolves that in 20
//! steps. It can be found cheaply: the embedding `e(α)` and its derivative along the path
//! `e'(α) = ∂e/∂h · Δ` take one primal and one tangent sequence per α, where an attribution
//! step takes `T` tangents (forward mode) or `D` cotangents (reverse).
//!
//! 1. **Survey.** Probe `e` and `e'` at the ends and at plain Gauss–Legendre's N nodes, which
//!    gives that rule's exact error. Then split, eight new points at a time, the cells where
//!    the two disagree most: `‖e(b) − e(a) − (b − a)(e'(a) + e'(b))/2‖₂`, the trapezoid's error,
//!    large where the path bends and huge across a jump. The cells end up narrow around the
//!    sharp features and wide where the path is smooth.
//! 2. **Model.** On each cell the path is the cubic Hermite interpolant of the probed values
//!    and slopes, exact at every probed point.
//! 3. **Panels.** Over the cells' ends, dynamic programming chooses the panels and each panel's
//!    number of Gauss–Legendre nodes (1 to 6 or more), `steps` nodes in all, to minimise the sum
//!    over panels of the model's quadrature error `‖Σ_k w_k ê'(α_k) − (e(b) − e(a))‖₂`.
//! 4. **Or plain.** Where that least model error is not below plain Gauss–Legendre's exact
//!    error, the path is smooth (the model's own inexactness dominates) and the rule is plain
//!    Gauss–Legendre.
//!
//! `--steps N` stays N Jacobian evaluations per text; the survey's probes come on top,
//! `N + 2 + min(N + 16, 112)` single-tangent evaluations at most (docs/performance.md, "Quadrature: steps per rule", has what
//! they cost). Below `MIN_STEPS` steps the rule is plain Gauss–Legendre and nothing is probed.
//!
//! The rule adapts to the sum over tokens of `P`'s columns, which is what completeness checks.
//! The columns share its sharp points, since those come from the primal, but a feature that
//! cancels in the sum over tokens is not seen.

use crate::attribution::quadrature::{gauss_legendre_unit, Node};
use crate::error::{Error, Result};

/// Fewer steps than this are plain Gauss–Legendre: too few nodes to place.
pub const MIN_STEPS: usize = 5;

/// The most points the survey adds to its first ones.
const MAX_REFINEMENTS: usize = 112;

/// The most survey cells one panel spans (bounds the dynamic programme's work).
const MAX_PANEL_CELLS: usize = 64;

/// New points per probe call: few enough to follow a feature down, enough to batch.
const PROBES_PER_ROUND: usize = 8;

/// The most Gauss–Legendre nodes a panel gets unless the steps need more.
const MAX_PANEL_NODES: usize = 6;

/// What the rule probes the path with: for each α given, the attributed embedding there and its
/// derivative along the path, both `[alphas, D]` row-major.
pub type PathProbe<'a> = dyn FnMut(&[f64]) -> Result<(Vec<f64>, Vec<f64>)> + 'a;

/// The `steps` nodes of the adaptive rule along the path `probe` samples, ascending in α.
pub fn nodes(steps: usize, probe: &mut PathProbe<'_>) -> Result<Vec<Node>> {
    if steps < MIN_STEPS {
        return Ok(gauss_legendre_unit(steps));
    }
    // Plain Gauss–Legendre's nodes and the ends open the survey, so its exact error is known.
    let plain = gauss_legendre_unit(steps);
    let first: Vec<f64> = [0.0, 1.0].into_iter().chain(plain.iter().map(|node| node.alpha)).collect();
    let mut survey = Survey::of(probe, &first)?;
    let plain_error = survey.error_of(&plain);
    survey.refine(probe, first.len() + (steps + 16).min(MAX_REFINEMENTS))?;
    // Where the path is smooth the model's own inexactness exceeds plain Gauss–Legendre's
    // error, and plain Gauss–Legendre is the better rule.
    Ok(match survey.panels(steps) {
        Some((panels, model_error)) if model_error < plain_error => panels,
        _ => plain,
    })
}

/// `count`-point Gauss–Legendre on `[start, end]`.
fn panel_nodes(start: f64, end: f64, count: usize) -> Vec<Node> {
    let width = end - start;
    gauss_legendre_unit(count)
        .into_iter()
        .map(|node| Node { alpha: start + width * node.alpha, weight: width * node.weight })
        .collect()
}

/// The probed points of the path, ascending in α, with `e` and `e'` at each (`width` each).
struct Survey {
    alphas: Vec<f64>,
    values: Vec<Vec<f64>>,
    slopes: Vec<Vec<f64>>,
}

impl Survey {
    /// The survey of the points `first` (0 and 1 among them).
    fn of(probe: &mut PathProbe<'_>, first: &[f64]) -> Result<Self> {
        let mut survey = Survey { alphas: Vec::new(), values: Vec::new(), slopes: Vec::new() };
        survey.add(probe, first)?;
        Ok(survey)
    }

    /// `‖Σ_k w_k e'(α_k) − (e(1) − e(0))‖₂` of a rule whose nodes are all survey points.
    fn error_of(&self, nodes: &[Node]) -> f64 {
        let last = self.alphas.len() - 1;
        let mut sum = difference(&self.values[0], &self.values[last]);
        for node in nodes {
            let at = self.alphas.partition_point(|&a| a < node.alpha);
            sum.iter_mut().zip(&self.slopes[at]).for_each(|(s, g)| *s += node.weight * g);
        }
        norm(&sum)
    }

    /// Splits the worst cells until `budget` points are probed or no cell's trapezoid error
    /// is above rounding.
    fn refine(&mut self, probe: &mut PathProbe<'_>, budget: usize) -> Result<()> {
        let survey = self;
        let scale = norm(&difference(&survey.values[survey.alphas.len() - 1], &survey.values[0]));
        while survey.alphas.len() < budget {
            let cells: Vec<(usize, f64)> = (0..survey.alphas.len() - 1)
                .map(|c| (c, survey.trapezoid_error(c)))
                // Rounding, or a cell too narrow to split in f64.
                .filter(|&(c, error)| error > 1e-12 * scale && survey.alphas[c + 1] - survey.alphas[c] > 1e-12)
                .collect();
            if cells.is_empty() {
                break;
            }
            // Each new point goes to the cell whose error per piece is largest, so a jump that
            // dominates gets the whole round and shrinks ninefold, a bend gets a bisection.
            let mut pieces = vec![1usize; cells.len()];
            for _ in 0..PROBES_PER_ROUND.min(budget - survey.alphas.len()) {
                let share = |k: usize| cells[k].1 / pieces[k] as f64;
                let worst = (0..cells.len()).max_by(|&a, &b| share(a).total_cmp(&share(b))).unwrap_or(0);
                pieces[worst] += 1;
            }
            let mut inner = Vec::new();
            for (&(c, _), &count) in cells.iter().zip(&pieces) {
                let (a, h) = (survey.alphas[c], survey.alphas[c + 1] - survey.alphas[c]);
                inner.extend((1..count).map(|p| a + h * p as f64 / count as f64));
            }
            survey.add(probe, &inner)?;
        }
        Ok(())
    }

    /// Probes `alphas` and merges them in.
    fn add(&mut self, probe: &mut PathProbe<'_>, alphas: &[f64]) -> Result<()> {
        let (values, slopes) = probe(alphas)?;
        let width = values.len() / alphas.len().max(1);
        if width == 0 || values.len() != alphas.len() * width || slopes.len() != values.len() {
            return Err(Error::Internal(format!(
                "the path probe returned {} values and {} slopes for {} points",
                values.len(),
                slopes.len(),
                alphas.len()
            )));
        }
        for (k, &alpha) in alphas.iter().enumerate() {
            let at = self.alphas.partition_point(|&a| a < alpha);
            self.alphas.insert(at, alpha);
            self.values.insert(at, values[k * width..][..width].to_vec());
            self.slopes.insert(at, slopes[k * width..][..width].to_vec());
        }
        Ok(())
    }

    /// `‖e(b) − e(a) − (b − a)(e'(a) + e'(b))/2‖₂` on cell `c`.
    fn trapezoid_error(&self, c: usize) -> f64 {
        let h = self.alphas[c + 1] - self.alphas[c];
        let (va, vb, sa, sb) = (&self.values[c], &self.values[c + 1], &self.slopes[c], &self.slopes[c + 1]);
        (0..va.len()).map(|d| vb[d] - va[d] - 0.5 * h * (sa[d] + sb[d])).map(|x| x * x).sum::<f64>().sqrt()
    }

    /// `ê'(α)`: the derivative of the cubic Hermite interpolant on α's cell.
    fn model_slope(&self, alpha: f64, out: &mut [f64]) {
        let c = self.alphas.partition_point(|&a| a <= alpha).clamp(1, self.alphas.len() - 1) - 1;
        let (a, b) = (self.alphas[c], self.alphas[c + 1]);
        let (h, t) = (b - a, (alpha - a) / (b - a));
        // Derivatives of the Hermite basis h00, h10, h01, h11 in t (h10, h11 carry h·slope).
        let (d00, d10, d11) = (6.0 * t * t - 6.0 * t, 3.0 * t * t - 4.0 * t + 1.0, 3.0 * t * t - 2.0 * t);
        let (va, vb, sa, sb) = (&self.values[c], &self.values[c + 1], &self.slopes[c], &self.slopes[c + 1]);
        for (d, o) in out.iter_mut().enumerate() {
            *o = (d00 * (va[d] - vb[d])) / h + d10 * sa[d] + d11 * sb[d];
        }
    }

    /// The model's error of the Gauss–Legendre rule `unit` (on [0, 1]) on `[alphas[i], alphas[j]]`.
    fn panel_error(&self, i: usize, j: usize, unit: &[Node], slope: &mut [f64], sum: &mut [f64]) -> f64 {
        sum.iter_mut().zip(&self.values[j]).zip(&self.values[i]).for_each(|((s, vj), vi)| *s = vi - vj);
        let (start, width) = (self.alphas[i], self.alphas[j] - self.alphas[i]);
        for node in unit {
            self.model_slope(start + width * node.alpha, slope);
            sum.iter_mut().zip(slope.iter()).for_each(|(s, g)| *s += width * node.weight * g);
        }
        norm(sum)
    }

    /// The composite rule of `steps` nodes whose panels end at survey points and whose model
    /// error, summed over panels, is least; and that error.
    fn panels(&self, steps: usize) -> Option<(Vec<Node>, f64)> {
        let points = self.alphas.len();
        let most = MAX_PANEL_NODES.max((2 * steps).div_ceil(points - 1)).min(steps);
        let units: Vec<Vec<Node>> = (0..=most).map(gauss_legendre_unit).collect();
        let width = self.values[0].len();
        let (mut slope, mut sum) = (vec![0.0; width], vec![0.0; width]);
        // best[j][m]: least error covering [0, alphas[j]] with m nodes, and the last panel.
        let mut best = vec![vec![(f64::INFINITY, 0usize, 0usize); steps + 1]; points];
        best[0][0].0 = 0.0;
        for j in 1..points {
            for i in j.saturating_sub(MAX_PANEL_CELLS)..j {
                for count in 1..=most {
                    let error = self.panel_error(i, j, &units[count], &mut slope, &mut sum);
                    for m in count..=steps {
                        let total = best[i][m - count].0 + error;
                        if total < best[j][m].0 {
                            best[j][m] = (total, i, count);
                        }
                    }
                }
            }
        }
        let least = best[points - 1][steps].0;
        if !least.is_finite() {
            return None;
        }
        let (mut j, mut m, mut nodes) = (points - 1, steps, Vec::with_capacity(steps));
        while j > 0 {
            let (_, i, count) = best[j][m];
            nodes.extend(panel_nodes(self.alphas[i], self.alphas[j], count));
            (j, m) = (i, m - count);
        }
        nodes.sort_by(|a, b| a.alpha.total_cmp(&b.alpha));
        Some((nodes, least))
    }
}

fn difference(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter().zip(b).map(|(a, b)| a - b).collect()
}

fn norm(v: &[f64]) -> f64 {
    v.iter().map(|x| x * x).sum::<f64>().sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attribution::quadrature::{Quadrature, Rule};

    /// A probe of the scalar path `g` with derivative `slope`, counting the points asked for.
    fn probe_of<'a>(
        g: &'a dyn Fn(f64) -> f64,
        slope: &'a dyn Fn(f64) -> f64,
        asked: &'a mut usize,
    ) -> impl FnMut(&[f64]) -> Result<(Vec<f64>, Vec<f64>)> + 'a {
        move |alphas: &[f64]| {
            *asked += alphas.len();
            Ok((alphas.iter().map(|&a| g(a)).collect(), alphas.iter().map(|&a| slope(a)).collect()))
        }
    }

    fn integrate(nodes: &[Node], f: &dyn Fn(f64) -> f64) -> f64 {
        nodes.iter().map(|n| n.weight * f(n.alpha)).sum()
    }

    #[test]
    fn nodes_cover_the_path_with_the_steps_asked_for() {
        let (g, slope) = (|a: f64| (3.0 * a).sin(), |a: f64| 3.0 * (3.0 * a).cos());
        for steps in [1, 3, 7, 8, 9, 11, 20, 23, 50] {
            let mut asked = 0;
            let nodes = nodes(steps, &mut probe_of(&g, &slope, &mut asked)).unwrap();
            assert_eq!(nodes.len(), steps);
            assert!(nodes.windows(2).all(|w| w[0].alpha < w[1].alpha), "N={steps}: nodes ascend");
            assert!(nodes.iter().all(|n| n.alpha > 0.0 && n.alpha < 1.0 && n.weight > 0.0));
            let weights: f64 = nodes.iter().map(|n| n.weight).sum();
            assert!((weights - 1.0).abs() < 1e-14, "N={steps}: weights sum to {weights}");
            // No probe below MIN_STEPS; above, the survey's budget.
            match steps < MIN_STEPS {
                true => assert_eq!(asked, 0, "N={steps}"),
                false => assert!(asked <= steps + 2 + (steps + 16).min(112), "N={steps}: {asked} probes"),
            }
        }
    }

    #[test]
    fn a_sharp_step_is_resolved_where_fixed_rules_are_not() {
        // A smooth trend plus a tanh step of width 0.01 at an α no bisection lands on.
        let (centre, width) = (0.437, 0.01);
        let g = move |a: f64| 0.3 * a * a + ((a - centre) / width).tanh();
        let slope = move |a: f64| 0.6 * a + 1.0 / (((a - centre) / width).cosh().powi(2) * width);
        let exact = g(1.0) - g(0.0);
        let error_of = |nodes: &[Node]| (integrate(nodes, &slope) - exact).abs() / exact.abs();
        let mut asked = 0;
        let adaptive_20 = error_of(&nodes(20, &mut probe_of(&g, &slope, &mut asked)).unwrap());
        let fixed = |rule: Rule, steps: usize| {
            let q = Quadrature::new(rule, steps).unwrap();
            error_of(&q.fixed_nodes().unwrap())
        };
        let (gauss_20, riemann_100) = (fixed(Rule::GaussLegendre, 20), fixed(Rule::RiemannRight, 100));
        assert!(adaptive_20 < riemann_100 / 10.0, "adaptive 20 {adaptive_20:e} vs riemann-right 100 {riemann_100:e}");
        assert!(adaptive_20 < gauss_20 / 10.0, "adaptive 20 {adaptive_20:e} vs gauss-legendre 20 {gauss_20:e}");
    }

    #[test]
    fn a_near_jump_far_narrower_than_any_spacing_is_found() {
        // 10% of the path within ~10⁻⁴ of α (MPNet layer 6's kind), on a smooth trend.
        let (centre, width) = (0.3446, 1e-4);
        let g = move |a: f64| (2.0 * a).sin() + 0.1 * ((a - centre) / width).tanh();
        let slope = move |a: f64| 2.0 * (2.0 * a).cos() + 0.1 / (((a - centre) / width).cosh().powi(2) * width);
        let exact = g(1.0) - g(0.0);
        let mut asked = 0;
        let adaptive_20 = (integrate(&nodes(20, &mut probe_of(&g, &slope, &mut asked)).unwrap(), &slope) - exact).abs();
        let riemann_100 =
            (integrate(&Quadrature::riemann_right(100).unwrap().fixed_nodes().unwrap(), &slope) - exact).abs();
        assert!(adaptive_20 < 1e-3 * exact.abs(), "adaptive 20: {:e} of the integral", adaptive_20 / exact);
        assert!(adaptive_20 < riemann_100 / 10.0, "adaptive 20 {adaptive_20:e} vs riemann-right 100 {riemann_100:e}");
    }

    #[test]
    fn smooth_paths_lose_little_to_plain_gauss_legendre() {
        let (g, slope) = (|a: f64| (2.0 * a).exp(), |a: f64| 2.0 * (2.0 * a).exp());
        let exact = g(1.0) - g(0.0);
        let mut asked = 0;
        let adaptive_20 = (integrate(&nodes(20, &mut probe_of(&g, &slope, &mut asked)).unwrap(), &slope) - exact).abs();
        // Degree 7 on panels no wider than 1/2: far below any right-Riemann error.
        assert!(adaptive_20 / exact < 1e-9, "{adaptive_20:e}");
    }

    #[test]
    fn a_bad_probe_is_an_error_not_a_panic() {
        let mut short = |alphas: &[f64]| Ok((vec![0.0; alphas.len()], vec![0.0; 1]));
        assert!(nodes(20, &mut short).is_err());
        let mut failing = |_: &[f64]| -> Result<(Vec<f64>, Vec<f64>)> { Err(Error::Internal("probe".into())) };
        assert!(nodes(20, &mut failing).is_err());
    }
}
