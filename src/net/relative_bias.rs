//! MPNet's relative position bias: a `[buckets, heads]` table, looked up per query–key
//! distance into the `[heads, T, T]` score bias that every layer adds before its softmax; and
//! the adjoint of that lookup, which training needs.

use crate::model::arch::RelativeBuckets;

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
