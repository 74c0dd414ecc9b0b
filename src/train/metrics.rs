//! Evaluation metrics of training.

/// Spearman's rank correlation: the Pearson correlation of the ranks, tied values taking the
/// mean of the ranks they span (as `scipy.stats.spearmanr`). `None` when the lengths differ,
/// there are fewer than 2 items, either input is constant, or a value is NaN.
pub fn spearman(x: &[f64], y: &[f64]) -> Option<f64> {
    if x.len() != y.len() || x.len() < 2 || x.iter().chain(y).any(|v| v.is_nan()) {
        return None;
    }
    pearson(&average_ranks(x), &average_ranks(y))
}

/// 1-based ranks; a run of equal values gets the mean of its ranks.
fn average_ranks(values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&i, &j| values[i].total_cmp(&values[j]));
    let mut ranks = vec![0.0; values.len()];
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        // `==` rather than total_cmp, so that -0.0 and 0.0 tie.
        while end < order.len() && values[order[end]] == values[order[start]] {
            end += 1;
        }
        // Positions start..end hold ranks start+1 ..= end; their mean is (start + 1 + end) / 2.
        let rank = (start + 1 + end) as f64 / 2.0;
        for &i in &order[start..end] {
            ranks[i] = rank;
        }
        start = end;
    }
    ranks
}

fn pearson(x: &[f64], y: &[f64]) -> Option<f64> {
    let n = x.len() as f64;
    let (mean_x, mean_y) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let (mut xy, mut xx, mut yy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        let (dx, dy) = (a - mean_x, b - mean_y);
        xy += dx * dy;
        xx += dx * dx;
        yy += dy * dy;
    }
    if xx == 0.0 || yy == 0.0 {
        return None;
    }
    Some((xy / (xx * yy).sqrt()).clamp(-1.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotone_relations_are_one_and_minus_one() {
        let x = [0.1, 0.5, 0.7, 2.0, 9.0];
        let up = [1.0, 4.0, 9.0, 16.0, 100.0];
        let down = [5.0, 4.0, 3.0, 2.0, -1.0];
        assert!((spearman(&x, &up).unwrap() - 1.0).abs() < 1e-12);
        assert!((spearman(&x, &down).unwrap() + 1.0).abs() < 1e-12);
        // Order of the items does not matter.
        let (xs, ups) = ([9.0, 0.1, 2.0, 0.5, 0.7], [100.0, 1.0, 16.0, 4.0, 9.0]);
        assert!((spearman(&xs, &ups).unwrap() - 1.0).abs() < 1e-12);
    }

    #[test]
    fn ties_take_the_mean_rank() {
        assert_eq!(average_ranks(&[3.0, 1.0, 3.0, 2.0, 3.0]), vec![4.0, 1.0, 4.0, 2.0, 4.0]);
        // x = [1, 2, 2, 3] has ranks [1, 2.5, 2.5, 4]; y = [10, 20, 30, 40] has [1, 2, 3, 4].
        // Both means are 2.5, so the deviations are dx = [-1.5, 0, 0, 1.5] and
        // dy = [-1.5, -0.5, 0.5, 1.5]. Σ dx·dy = 2.25 + 0 + 0 + 2.25 = 4.5,
        // Σ dx² = 2.25 + 2.25 = 4.5, Σ dy² = 2.25 + 0.25 + 0.25 + 2.25 = 5,
        // ρ = 4.5 / √(4.5 · 5) = √(4.5 / 5) = √0.9 ≈ 0.9486832980505138
        // (scipy.stats.spearmanr([1, 2, 2, 3], [10, 20, 30, 40]) gives the same).
        let rho = spearman(&[1.0, 2.0, 2.0, 3.0], &[10.0, 20.0, 30.0, 40.0]).unwrap();
        assert!((rho - 0.9_f64.sqrt()).abs() < 1e-12, "{rho}");
    }

    #[test]
    fn degenerate_inputs_have_no_correlation() {
        assert_eq!(spearman(&[1.0, 2.0], &[1.0, 2.0, 3.0]), None);
        assert_eq!(spearman(&[1.0], &[1.0]), None);
        assert_eq!(spearman(&[], &[]), None);
        assert_eq!(spearman(&[1.0, 1.0, 1.0], &[1.0, 2.0, 3.0]), None);
        assert_eq!(spearman(&[1.0, 2.0, 3.0], &[0.0, -0.0, 0.0]), None);
        assert_eq!(spearman(&[1.0, f64::NAN, 3.0], &[1.0, 2.0, 3.0]), None);
    }
}
