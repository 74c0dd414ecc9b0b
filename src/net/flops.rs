//! Arithmetic of one text's attribution pass, counted from the shapes: the GEMMs and the
//! attention products, a multiply-add counting as two flops (elementwise passes, LayerNorm and
//! GELU are left out: they are memory-bound and small). Counted twice: as simattr runs it, with
//! the structure of design.md §3 exploited, and as the plain path a generic forward-mode
//! autodiff (torch.func) runs, so that benches can report both the achieved GFLOP/s and the
//! arithmetic saved.

use crate::net::layer::LayerShape;

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

/// Counts the pass through `layers` encoder layers (the attributed one and those above it) for
/// `steps` steps and all `tokens` token directions.
pub fn attribution_flops(shape: LayerShape, layers: usize, tokens: usize, steps: usize) -> AttributionFlops {
    let (h, f, t, n) = (shape.hidden as f64, shape.ffn as f64, tokens as f64, steps as f64);
    let layers_f = layers as f64;
    // Per row: q/k/v, attention output, FFN in and out.
    let gemm_per_row = 2.0 * h * (3.0 * h + h + 2.0 * f);
    let (primal_rows, tangent_seqs) = (n * t, n * t);
    let tangent_rows = tangent_seqs * t;

    // Primal, per layer: the GEMMs and QKᵀ, PV (2·T²·d each per head).
    let primal = layers_f * (primal_rows * gemm_per_row + n * 4.0 * t * t * h);
    // The last layer's reduction needs x̂W once per primal row.
    let primal = if layers > 0 { primal + 2.0 * primal_rows * h * f } else { primal };

    // Plain tangents, per layer: every tangent row through the GEMMs, and Ṡ = Q̇Kᵀ + QK̇ᵀ,
    // Ȯ = ṖV + PV̇ (8·T²·d per head and tangent sequence).
    let plain_layer = tangent_rows * gemm_per_row + tangent_seqs * 8.0 * t * t * h;
    let plain_tangents = layers_f * plain_layer;

    if layers == 0 {
        return AttributionFlops { primal, tangents: 0.0, plain_tangents };
    }
    // First layer: q/k/v of the T distinct tangent rows only, and an attention JVP that touches
    // row i fully (≈ 4·T·d) and every other row through column i (≈ 7·d) per head.
    let first_qkv_saved = tangent_rows * 2.0 * h * 3.0 * h - t * 2.0 * h * 3.0 * h;
    let first_attention_saved = tangent_seqs * (8.0 * t * t * h - (4.0 * t + 7.0 * (t - 1.0)) * h);
    // Last layer: the output GEMM on one row per tangent sequence, plus two dot products and
    // an axpy over the FFN width per tangent row.
    let last_ffn_out_saved = (tangent_rows - tangent_seqs) * 2.0 * f * h - tangent_rows * 6.0 * f;
    let tangents = plain_tangents - first_qkv_saved - first_attention_saved - last_ffn_out_saved;
    AttributionFlops { primal, tangents, plain_tangents }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Heads;

    const MINILM: LayerShape = LayerShape { hidden: 384, ffn: 1536, heads: Heads { count: 12, dim: 32 }, eps: 1e-12 };

    #[test]
    fn one_layer_plain_tangents_are_the_gemm_rows_times_the_weights() {
        // 2 steps × 3 tokens: 18 tangent rows, each 2·(4·384² + 2·384·1536) flops of GEMM,
        // and 6 tangent sequences of 8·9·384 attention flops.
        let flops = attribution_flops(MINILM, 1, 3, 2);
        let want = 18.0 * 2.0 * (4.0 * 384.0 * 384.0 + 2.0 * 384.0 * 1536.0) + 6.0 * 8.0 * 9.0 * 384.0;
        assert_eq!(flops.plain_tangents, want);
    }

    #[test]
    fn the_structure_saves_most_in_a_single_layer_and_less_in_many() {
        let one = attribution_flops(MINILM, 1, 12, 50);
        let six = attribution_flops(MINILM, 6, 12, 50);
        assert!(one.tangents < 0.6 * one.plain_tangents, "{one:?}");
        assert!(six.tangents < six.plain_tangents && six.tangents > 0.85 * six.plain_tangents, "{six:?}");
        // The plain path scales with the steps; the first layer's T projected rows do not.
        let double = attribution_flops(MINILM, 1, 12, 100);
        assert!((double.plain() / one.plain() - 2.0).abs() < 1e-12);
        assert!(double.done() < 2.0 * one.done());
    }
}
