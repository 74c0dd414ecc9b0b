//! MPNet's relative position bias: a `[buckets, heads]` table, looked up per query–key
//! distance into the `[heads, T, T]` score bias that every layer adds before its softmax; and
//! the adjoint of that lookup, which training needs; and the score bias of a positional mask
//! (causal or windowed attention), which every pass adds as it adds the relative bias.

use crate::model::arch::RelativeBuckets;
use crate::model::{AttentionMask, EncoderConfig};
use crate::params::HostTensor;

/// `bias[h, i, j] = table[bucket(j − i), h]` for sequences of `tokens` tokens.
pub fn score_bias(buckets: RelativeBuckets, table: &[f32], heads: usize, tokens: usize) -> Vec<f32> {
    let mut bias = vec![0.0f32; heads * tokens * tokens];
    for i in 0..tokens {
        for j in 0..tokens {
            let row = &table[buckets.bucket(j as i64 - i as i64) * heads..][..heads];
            for (h, &value) in row.iter().enumerate() {
                bias[(h * tokens + i) * tokens + j] = value;
            }
        }
    }
    bias
}

/// The adjoint of `score_bias`: adds `d_bias[h, i, j]` (`[heads, T, T]`) to
/// `d_table[bucket(j − i), h]` (`[buckets, heads]`).
pub fn table_grad(buckets: RelativeBuckets, d_bias: &[f64], heads: usize, tokens: usize, d_table: &mut [f64]) {
    for h in 0..heads {
        for i in 0..tokens {
            for j in 0..tokens {
                d_table[buckets.bucket(j as i64 - i as i64) * heads + h] += d_bias[(h * tokens + i) * tokens + j];
            }
        }
    }
}

/// ALiBi's slope of each of `heads` heads (Press et al., as JinaBERT computes them): for a
/// power of two `n`, `m_h = 2^(−8(h+1)/n)`; otherwise the slopes of the largest power of two
/// `c < n`, then every other slope of `2c`, the first `n − c` of them.
pub fn alibi_slopes(heads: usize) -> Vec<f64> {
    let of_power_of_two = |n: usize| (1..=n).map(|h| 2f64.powf(-8.0 * h as f64 / n as f64)).collect::<Vec<_>>();
    if heads.is_power_of_two() {
        return of_power_of_two(heads);
    }
    let c = 1 << heads.ilog2();
    let mut slopes = of_power_of_two(c);
    slopes.extend(alibi_slopes(2 * c).into_iter().step_by(2).take(heads - c));
    slopes
}

/// JinaBERT's symmetric ALiBi as a `[heads, T, T]` score bias: `bias[h, i, j] = −m_h |i − j|`,
/// in f32 as every score bias is uploaded (the slopes of a power-of-two head count are powers
/// of two, so exact; others round as PyTorch's float32 ALiBi does).
pub fn alibi_bias(heads: usize, tokens: usize) -> Vec<f32> {
    let slopes = alibi_slopes(heads);
    let mut bias = vec![0.0f32; heads * tokens * tokens];
    for (h, block) in bias.chunks_mut(tokens * tokens).enumerate() {
        for (row, values) in block.chunks_mut(tokens).enumerate() {
            for (j, value) in values.iter_mut().enumerate() {
                *value = (-slopes[h] * row.abs_diff(j) as f64) as f32;
            }
        }
    }
    bias
}

/// What a masked key's score gets: far enough below any score that its probability is exactly
/// 0 in f32 and f64 (`exp(−1e30)` underflows), finite so that no backend meets `∞ − ∞`.
pub const MASKED_SCORE: f32 = -1e30;

/// The `[heads, T, T]` score bias of a positional mask (causal or windowed attention): 0 where
/// query `i` sees key `j`, `MASKED_SCORE` where it does not; added to `base` (a relative bias)
/// where there is one.
pub fn mask_bias(mask: AttentionMask, heads: usize, tokens: usize, base: Option<Vec<f32>>) -> Vec<f32> {
    let mut bias = base.unwrap_or_else(|| vec![0.0f32; heads * tokens * tokens]);
    for (row, values) in bias.chunks_mut(tokens).enumerate() {
        let i = row % tokens;
        for (j, value) in values.iter_mut().enumerate() {
            if !mask.sees(i, j) {
                *value = MASKED_SCORE;
            }
        }
    }
    bias
}

/// The score bias of a layer whose attention is `mask`, at `tokens` tokens: the relative
/// position bias (MPNet, T5: from `table`) or ALiBi (JinaBERT), with the mask's
/// `MASKED_SCORE` where it hides a key; `None` where the layer adds nothing to its scores.
/// Every pass and training take it from here.
pub fn layer_score_bias(
    config: &EncoderConfig,
    table: Option<&HostTensor>,
    mask: AttentionMask,
    tokens: usize,
) -> Option<Vec<f32>> {
    let heads = config.num_heads;
    let base = match (config.relative_buckets, table) {
        (Some(buckets), Some(table)) => Some(score_bias(buckets, table.data(), heads, tokens)),
        _ => config.alibi.then(|| alibi_bias(heads, tokens)),
    };
    match mask {
        AttentionMask::Full => base,
        mask => Some(mask_bias(mask, heads, tokens, base)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alibi_slopes_follow_press_et_al() {
        // Powers of two: 2^(−8h/n); 12 heads: 8's slopes, then 16's 1st, 3rd, 5th and 7th.
        assert_eq!(alibi_slopes(4), vec![0.25, 0.0625, 0.015625, 0.00390625]);
        let twelve = alibi_slopes(12);
        assert_eq!(twelve[..8], alibi_slopes(8)[..]);
        let sixteen = alibi_slopes(16);
        assert_eq!(twelve[8..], [sixteen[0], sixteen[2], sixteen[4], sixteen[6]]);
        assert!((twelve[8] - 2f64.powf(-0.5)).abs() < 1e-15);
        let bias = alibi_bias(4, 3);
        assert_eq!(bias[..9], [0.0, -0.25, -0.5, -0.25, 0.0, -0.25, -0.5, -0.25, 0.0]);
        assert_eq!(bias[27 + 2], -2.0 * 0.00390625);
    }

    #[test]
    fn masks_keep_exactly_the_keys_each_query_sees() {
        // Two heads, four tokens: each head's [i, j] block, 0 kept, MASKED_SCORE dropped.
        let kept = |mask, base| -> Vec<Vec<bool>> {
            let bias = mask_bias(mask, 2, 4, base);
            assert_eq!(bias[..16], bias[16..], "every head masks alike");
            bias[..16].chunks(4).map(|row| row.iter().map(|&v| v > MASKED_SCORE / 2.0).collect()).collect()
        };
        let (t, f) = (true, false);
        let causal = vec![vec![t, f, f, f], vec![t, t, f, f], vec![t, t, t, f], vec![t, t, t, t]];
        assert_eq!(kept(AttentionMask::Causal, None), causal);
        let window = vec![vec![t, t, f, f], vec![t, t, t, f], vec![f, t, t, t], vec![f, f, t, t]];
        assert_eq!(kept(AttentionMask::Window { radius: 1 }, None), window);
        let causal_window = vec![vec![t, f, f, f], vec![t, t, f, f], vec![f, t, t, f], vec![f, f, t, t]];
        assert_eq!(kept(AttentionMask::CausalWindow { width: 2 }, None), causal_window);
        // A relative bias keeps its values where the mask keeps the key.
        let base: Vec<f32> = (0..32).map(|v| v as f32).collect();
        let bias = mask_bias(AttentionMask::Causal, 2, 4, Some(base));
        assert_eq!((bias[4], bias[5], bias[6]), (4.0, 5.0, MASKED_SCORE));
    }
}
