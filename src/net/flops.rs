//! Arithmetic of one text's attribution pass, counted from the block's description: the GEMMs
//! and the attention products, a multiply-add counting as two flops (elementwise passes, norms
//! and activations are left out: they are memory-bound and small). Counted twice: as simattr
//! runs it, with the rewrites of docs/design.md §3 that the description matches, and as the
//! plain path a generic forward-mode autodiff (torch.func) runs, so that benches can report
//! both the achieved GFLOP/s and the arithmetic saved, and `--mode auto` can compare the modes.

use crate::net::layer::LayerShape;

/// What the counts read of a block's description (`Block::cost`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockCost {
    /// One row through every dense layer of the block: `Σ 2·in·out`.
    pub gemm_per_row: f64,
    /// Attention's width summed over the block's attention ops (`QKᵀ` and `PV` run over it).
    pub attention_width: f64,
    /// The dense layer projecting into attention, `(in, out)`, where the first layer's token
    /// directions reach it in structured form: `Some(true)` as the `T` token rows of `Δ` (and
    /// attention then as token rows: a post-LN block, whose input cotangents also split), or
    /// `Some(false)` as `N·T` step rows through a norm (a pre-norm block).
    pub qkv: Option<(f64, f64, bool)>,
    /// The output layer `(in, out)` of a block ending in `LayerNorm(Linear(a) + r)`, where the
    /// pooled last layer reduces its rows first.
    pub pooled_out: Option<(f64, f64)>,
    /// One row through the dense layers after the last attention op: what CLS and last-token
    /// pooling's last layer runs on one row per tangent sequence only (`Block::jvp_at_row`).
    pub after_attention_per_row: f64,
}

/// How the last layer's tangents reach the pooled vector in forward mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PooledTail {
    /// Mean pooling: the rows summed before the output GEMM (where the block allows it).
    Mean,
    /// CLS or last-token pooling: one row after attention.
    Row,
    /// Every row through the whole layer (max and the weighted poolings).
    Full,
}

impl From<LayerShape> for BlockCost {
    /// The post-LN block of `shape`.
    fn from(shape: LayerShape) -> Self {
        let (h, f) = (shape.hidden as f64, shape.ffn as f64);
        BlockCost {
            gemm_per_row: 2.0 * h * (3.0 * h + h + 2.0 * f),
            attention_width: shape.heads.width() as f64,
            qkv: Some((h, 3.0 * h, true)),
            pooled_out: Some((f, h)),
            after_attention_per_row: 2.0 * h * (h + 2.0 * f),
        }
    }
}

/// Flops of attributing one text of `tokens` tokens at one layer with `steps` steps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AttributionFlops {
    /// The primals: every step's forward pass through the attributed layers.
    pub primal: f64,
    /// The tangents, as simattr computes them.
    pub tangents: f64,
    /// The tangents on the plain path (every tangent row through every GEMM, dense attention JVP).
    pub plain_tangents: f64,
}

impl AttributionFlops {
    /// What simattr does: primals and tangents.
    pub fn done(&self) -> f64 {
        self.primal + self.tangents
    }

    /// What the plain path does.
    pub fn plain(&self) -> f64 {
        self.primal + self.plain_tangents
    }
}

/// `(primal, derivatives)` of the plain path through `layers` layers for `steps` steps with
/// `directions` tangent (or cotangent) sequences per step: per layer, the primal's GEMMs and
/// `QKᵀ`, `PV` (2·T²·d each per head), and every derivative row through the GEMMs with the dense
/// attention JVP or VJP (`Ṡ = Q̇Kᵀ + QK̇ᵀ`, `Ȯ = ṖV + PV̇`, or their four adjoint products:
/// 8·T²·d per head and sequence).
fn plain_pass(cost: BlockCost, layers: usize, tokens: usize, steps: usize, directions: usize) -> (f64, f64) {
    let (t, n, w) = (tokens as f64, steps as f64, cost.attention_width);
    let sequences = n * directions as f64;
    let primal = layers as f64 * (n * t * cost.gemm_per_row + n * 4.0 * t * t * w);
    let derivatives = layers as f64 * (sequences * t * cost.gemm_per_row + sequences * 8.0 * t * t * w);
    (primal, derivatives)
}

/// Counts the pass through `layers` encoder layers (the attributed one and those above it) for
/// `steps` steps and all `tokens` token directions, the last layer reaching the pooled vector
/// as `tail` says.
pub fn attribution_flops(
    cost: impl Into<BlockCost>,
    layers: usize,
    tokens: usize,
    steps: usize,
    tail: PooledTail,
) -> AttributionFlops {
    let cost = cost.into();
    let (t, n, w) = (tokens as f64, steps as f64, cost.attention_width);
    let (primal, plain_tangents) = plain_pass(cost, layers, tokens, steps, tokens);
    let (primal_rows, tangent_seqs) = (n * t, n * t);
    let tangent_rows = tangent_seqs * t;
    // The last layer's reduction needs x̂W once per primal row.
    let primal = match (layers > 0, tail, cost.pooled_out) {
        (true, PooledTail::Mean, Some((inputs, outputs))) => primal + 2.0 * primal_rows * inputs * outputs,
        _ => primal,
    };
    if layers == 0 {
        return AttributionFlops { primal, tangents: 0.0, plain_tangents };
    }
    // First layer: the projection into attention on the T distinct rows of Δ only (or the N·T
    // step rows, through a norm), and, from token rows, an attention JVP that touches row i
    // fully (≈ 4·T·d) and every other row through column i (≈ 7·d) per head.
    let (first_qkv_saved, first_attention_saved) = match cost.qkv {
        Some((inputs, outputs, true)) => (
            (tangent_rows - t) * 2.0 * inputs * outputs,
            tangent_seqs * (8.0 * t * t * w - (4.0 * t + 7.0 * (t - 1.0)) * w),
        ),
        Some((inputs, outputs, false)) => ((tangent_rows - primal_rows) * 2.0 * inputs * outputs, 0.0),
        None => (0.0, 0.0),
    };
    // Last layer: the output GEMM on one row per tangent sequence, plus two dot products and
    // an axpy over its input width per tangent row.
    // Or, for one pooled row, every GEMM after attention on one row per tangent sequence (and
    // per step on the primal).
    let last_ffn_out_saved = match (tail, cost.pooled_out) {
        (PooledTail::Mean, Some((inputs, outputs))) => {
            (tangent_rows - tangent_seqs) * 2.0 * inputs * outputs - tangent_rows * 6.0 * inputs
        }
        (PooledTail::Row, _) => (tangent_rows - tangent_seqs) * cost.after_attention_per_row,
        _ => 0.0,
    };
    let primal = match tail {
        PooledTail::Row => primal - (primal_rows - n) * cost.after_attention_per_row,
        _ => primal,
    };
    let tangents = plain_tangents - first_qkv_saved - first_attention_saved - last_ffn_out_saved;
    AttributionFlops { primal, tangents, plain_tangents }
}

/// Counts reverse mode's pass through `layers` layers for `steps` steps and `dims` output
/// cotangents per step: the taped primal, then every cotangent back. `plain_tangents` is the
/// xsbert way (every cotangent row through every GEMM's VJP, the dense attention VJP,
/// `8·T²·d` per head and sequence like the JVP's); `tangents` is what simattr does: under mean
/// pooling the last layer's output GEMM is not run on the cotangent rows (its VJP is
/// rank-structured, `mean_pooled_norm_linear_vjp`), and the attributed layer's Q/K/V GEMM is
/// replaced by a contraction with `Δ Wqkvᵀ` (`SplitCotangents`).
pub fn reverse_attribution_flops(
    cost: impl Into<BlockCost>,
    layers: usize,
    tokens: usize,
    steps: usize,
    dims: usize,
    mean_pooling: bool,
) -> AttributionFlops {
    let cost = cost.into();
    let (t, n, d) = (tokens as f64, steps as f64, dims as f64);
    let (primal, plain_tangents) = plain_pass(cost, layers, tokens, steps, dims);
    let (primal_rows, cotangent_rows) = (n * t, n * d * t);
    if layers == 0 {
        return AttributionFlops { primal, tangents: 0.0, plain_tangents };
    }
    // Each structured row costs a few flops per element instead of a GEMM row: x̂W once per
    // primal row for the rank-one top, and Δ Wqkvᵀ once per text for the split input.
    let (pooled_primal, last_ffn_out_saved) = match (mean_pooling, cost.pooled_out) {
        (true, Some((inputs, outputs))) => {
            (2.0 * primal_rows * inputs * outputs, cotangent_rows * (2.0 * inputs * outputs - 3.0 * (inputs + outputs)))
        }
        _ => (0.0, 0.0),
    };
    let (split_primal, first_qkv_saved) = match cost.qkv {
        Some((inputs, outputs, true)) => {
            (2.0 * t * inputs * outputs, cotangent_rows * (2.0 * inputs * outputs - 2.0 * outputs))
        }
        _ => (0.0, 0.0),
    };
    let primal = primal + pooled_primal + split_primal;
    let tangents = plain_tangents - last_ffn_out_saved - first_qkv_saved;
    AttributionFlops { primal, tangents, plain_tangents }
}

/// Whether reverse mode does fewer flops than forward mode for one text (`--mode auto`):
/// `dims` cotangents against `tokens` token tangents per step, each with its structure.
pub fn reverse_is_cheaper(
    cost: impl Into<BlockCost>,
    layers: usize,
    tokens: usize,
    steps: usize,
    dims: usize,
    mean_pooling: bool,
    tail: PooledTail,
) -> bool {
    let cost = cost.into();
    let forward = attribution_flops(cost, layers, tokens, steps, tail).done();
    reverse_attribution_flops(cost, layers, tokens, steps, dims, mean_pooling).done() < forward
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Heads;

    const MINILM: LayerShape =
        LayerShape { hidden: 384, ffn: 1536, heads: Heads { count: 12, dim: 32, scale: None }, eps: 1e-12 };

    #[test]
    fn one_layer_plain_tangents_are_the_gemm_rows_times_the_weights() {
        // 2 steps × 3 tokens: 18 tangent rows, each 2·(4·384² + 2·384·1536) flops of GEMM,
        // and 6 tangent sequences of 8·9·384 attention flops.
        let flops = attribution_flops(MINILM, 1, 3, 2, PooledTail::Mean);
        let want = 18.0 * 2.0 * (4.0 * 384.0 * 384.0 + 2.0 * 384.0 * 1536.0) + 6.0 * 8.0 * 9.0 * 384.0;
        assert_eq!(flops.plain_tangents, want);
    }

    #[test]
    fn the_structure_saves_most_in_a_single_layer_and_less_in_many() {
        let one = attribution_flops(MINILM, 1, 12, 50, PooledTail::Mean);
        let six = attribution_flops(MINILM, 6, 12, 50, PooledTail::Mean);
        assert!(one.tangents < 0.6 * one.plain_tangents, "{one:?}");
        assert!(six.tangents < six.plain_tangents && six.tangents > 0.85 * six.plain_tangents, "{six:?}");
        // The plain path scales with the steps; the first layer's T projected rows do not.
        let double = attribution_flops(MINILM, 1, 12, 100, PooledTail::Mean);
        assert!((double.plain() / one.plain() - 2.0).abs() < 1e-12);
        assert!(double.done() < 2.0 * one.done());
    }

    #[test]
    fn reverse_mode_does_the_forward_plain_work_with_dims_for_tokens() {
        // With D cotangents in place of T token tangents the plain paths do the same GEMM rows
        // and attention products, per layer and for many layers.
        for layers in [1, 6] {
            let forward = attribution_flops(MINILM, layers, 12, 5, PooledTail::Mean);
            let reverse = reverse_attribution_flops(MINILM, layers, 12, 5, 12, true);
            assert!((reverse.plain_tangents / forward.plain_tangents - 1.0).abs() < 1e-12);
        }
        // Reverse's structure saves the Q/K/V and FFN-output GEMMs of one layer: 7 of 12 H².
        let one = reverse_attribution_flops(MINILM, 1, 12, 5, 384, true);
        assert!(one.tangents < 0.5 * one.plain_tangents && one.tangents > 0.4 * one.plain_tangents, "{one:?}");
        // Without mean pooling only the Q/K/V GEMM goes.
        let cls = reverse_attribution_flops(MINILM, 1, 12, 5, 384, false);
        assert!(cls.tangents > one.tangents && cls.tangents < 0.8 * cls.plain_tangents, "{cls:?}");
    }

    /// The token count from which `--mode auto` picks reverse mode.
    fn crossover(shape: LayerShape, layers: usize, steps: usize) -> usize {
        (1..8 * shape.hidden)
            .find(|&t| reverse_is_cheaper(shape, layers, t, steps, shape.hidden, true, PooledTail::Mean))
            .unwrap()
    }

    #[test]
    fn auto_picks_forward_for_sentences_and_reverse_beyond_t_equals_d() {
        const MPNET: LayerShape =
            LayerShape { hidden: 768, ffn: 3072, heads: Heads { count: 12, dim: 64, scale: None }, eps: 1e-5 };
        for (shape, total) in [(MINILM, 6), (MPNET, 12)] {
            for layers in [1, total / 2, total] {
                let t = crossover(shape, layers, 20);
                eprintln!("hidden {} layers {layers}: reverse from {t} tokens", shape.hidden);
                // Several layers: from just above T = D, where the cotangent rows outnumber
                // the tangent rows. One layer: forward's structure (T projected rows, the rows
                // pooled before the output GEMM) puts it far beyond any max_seq_length.
                let (low, high) = if layers > 1 {
                    (shape.hidden, shape.hidden * 5 / 4)
                } else {
                    (4 * shape.hidden, 6 * shape.hidden)
                };
                assert!(t > low && t < high, "crossover at {t} tokens, expected in {low}..{high}");
                // Monotone: forward below, reverse above.
                assert!(!reverse_is_cheaper(shape, layers, t - 1, 20, shape.hidden, true, PooledTail::Mean));
                assert!(reverse_is_cheaper(shape, layers, t + 50, 20, shape.hidden, true, PooledTail::Mean));
            }
        }
    }

    #[test]
    fn one_pooled_row_saves_the_last_layer_after_attention() {
        // One layer, 12 tokens, 50 steps: the plain tangents less every tangent row but one per
        // sequence through the output projection and the feed-forward.
        let (t, n) = (12.0, 50.0);
        let full = attribution_flops(MINILM, 1, 12, 50, PooledTail::Full);
        let row = attribution_flops(MINILM, 1, 12, 50, PooledTail::Row);
        let after = 2.0 * 384.0 * (384.0 + 2.0 * 1536.0);
        assert_eq!(full.tangents - row.tangents, (n * t * t - n * t) * after);
        assert_eq!(full.primal - row.primal, (n * t - n) * after);
        // So forward mode stays the cheaper one to far longer texts than under full pooling.
        let crossover = |tail| (1..4000).find(|&t| reverse_is_cheaper(MINILM, 6, t, 20, 384, false, tail)).unwrap();
        assert!(crossover(PooledTail::Row) > crossover(PooledTail::Full), "{}", crossover(PooledTail::Full));
    }
}
