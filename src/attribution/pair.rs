//! Combining two texts' `P` into the token-token matrix `A = P_aᵀ P_b`, the score it explains,
//! and the completeness bookkeeping that says how far the approximation is from exact.

use crate::attribution::text::TextAttribution;
use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Similarity {
    /// `e(a)·e(b) / (|e(a)||e(b)|)`; `A` is divided by `|e(a)||e(b)|` as in xsbert, so its
    /// completeness holds for the dot product scaled at the endpoints, not for the cosine.
    Cos,
    /// `e(a)·e(b)`.
    Dot,
    /// `n(a)·n(b)` with `n = e/|e|`: each text's `P` is taken of `n` itself, differentiating
    /// through the normalization along the path (`TextOptions::normalized`), so `Σ A` converges
    /// to `cos − n(r_a)·n(b) − n(a)·n(r_b) + n(r_a)·n(r_b)` exactly. The texts' embeddings are
    /// then stored normalized.
    CosExact,
}

impl Similarity {
    pub fn name(self) -> &'static str {
        match self {
            Similarity::Cos => "cos",
            Similarity::Dot => "dot",
            Similarity::CosExact => "cos-exact",
        }
    }

    /// Whether the texts' `P` (and embeddings) are of the normalized embedding.
    pub fn normalizes(self) -> bool {
        self == Similarity::CosExact
    }

    /// The factor `A` and the reference terms are multiplied by.
    fn scale(self, a: &[f64], b: &[f64]) -> f64 {
        match self {
            Similarity::Cos => 1.0 / (norm(a) * norm(b)),
            // Cos-exact's embeddings are already normalized.
            Similarity::Dot | Similarity::CosExact => 1.0,
        }
    }

    pub fn score(self, a: &[f64], b: &[f64]) -> f64 {
        dot(a, b) * self.scale(a, b)
    }
}

impl std::str::FromStr for Similarity {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "cos" => Ok(Similarity::Cos),
            "dot" => Ok(Similarity::Dot),
            "cos-exact" => Ok(Similarity::CosExact),
            other => Err(Error::argument("--similarity", format!("`{other}` (expected cos, dot or cos-exact)"))),
        }
    }
}

/// The three terms by which `Σ A` differs from the score for an off-the-shelf model, in the
/// same scaling as `A`: `Σ A → score − ref_a·b − a·ref_b + ref_a·ref_b`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReferenceTerms {
    pub reference_a_b: f64,
    pub a_reference_b: f64,
    pub reference_a_reference_b: f64,
}

#[derive(Debug, Clone)]
pub struct PairAttribution {
    pub similarity: Similarity,
    /// `[T_a, T_b]` row-major: row i = token i of a, column j = token j of b.
    pub matrix: Vec<f64>,
    pub rows: usize,
    pub cols: usize,
    pub score: f64,
    pub attribution_sum: f64,
    pub reference_terms: ReferenceTerms,
}

impl PairAttribution {
    pub fn combine(a: &TextAttribution, b: &TextAttribution, similarity: Similarity) -> Self {
        let (ta, tb, dim) = (a.tokens(), b.tokens(), a.dim);
        let scale = similarity.scale(&a.embedding, &b.embedding);
        let mut matrix = vec![0.0; ta * tb];
        for i in 0..ta {
            for j in 0..tb {
                let sum: f64 = (0..dim).map(|d| a.projection[d * ta + i] * b.projection[d * tb + j]).sum();
                matrix[i * tb + j] = sum * scale;
            }
        }
        let attribution_sum = matrix.iter().sum();
        let reference_terms = ReferenceTerms {
            reference_a_b: dot(&a.reference_embedding, &b.embedding) * scale,
            a_reference_b: dot(&a.embedding, &b.reference_embedding) * scale,
            reference_a_reference_b: dot(&a.reference_embedding, &b.reference_embedding) * scale,
        };
        PairAttribution {
            similarity,
            matrix,
            rows: ta,
            cols: tb,
            score: similarity.score(&a.embedding, &b.embedding),
            attribution_sum,
            reference_terms,
        }
    }

    /// What `Σ A` converges to as the quadrature error vanishes.
    pub fn attributable(&self) -> f64 {
        let r = &self.reference_terms;
        self.score - r.reference_a_b - r.a_reference_b + r.reference_a_reference_b
    }

    /// `|Σ A − (score − reference terms)|`.
    pub fn completeness_error(&self) -> f64 {
        (self.attribution_sum - self.attributable()).abs()
    }

    pub fn row(&self, i: usize) -> &[f64] {
        &self.matrix[i * self.cols..(i + 1) * self.cols]
    }

    /// Token pairs `(i, j, value)` by decreasing |value|.
    pub fn strongest_pairs(&self, count: usize) -> Vec<(usize, usize, f64)> {
        let mut pairs: Vec<(usize, usize, f64)> =
            self.matrix.iter().enumerate().map(|(k, &v)| (k / self.cols, k % self.cols, v)).collect();
        pairs.sort_by(|x, y| y.2.abs().total_cmp(&x.2.abs()));
        pairs.truncate(count);
        pairs
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn norm(a: &[f64]) -> f64 {
    dot(a, a).sqrt()
}

/// The feature-pair attributions xsbert returns with `compress_embedding_dim=False`:
/// `F[i, h, j, h'] = scale · Σ_d (J_a[d, i, h] Δ_a[i, h]) (J_b[d, j, h'] Δ_b[j, h'])`, as
/// `[T_a, H, T_b, H]` row-major; summed over `h` and `h'` it is the token matrix `A`. Needs
/// both texts' kept Jacobians (`None` otherwise). One f64 GEMM, `[T_a·H, D] × [D, T_b·H]`.
pub fn feature_pairs(a: &TextAttribution, b: &TextAttribution, similarity: Similarity) -> Option<Vec<f64>> {
    let (ja, jb) = (a.jacobian.as_ref()?, b.jacobian.as_ref()?);
    let weighted = |j: &crate::attribution::Jacobian, tokens: usize| -> Vec<f64> {
        // [D, T·H]: J ⊙ Δ, Δ broadcast over D.
        let block = tokens * j.width;
        j.values.iter().enumerate().map(|(n, v)| v * j.delta[n % block]).collect()
    };
    let (ma, mb) = (weighted(ja, a.tokens()), weighted(jb, b.tokens()));
    let (rows, cols, dim) = (a.tokens() * ja.width, b.tokens() * jb.width, a.dim);
    let mut out = vec![0.0f64; rows * cols];
    let scale = similarity.scale(&a.embedding, &b.embedding);
    faer::linalg::matmul::matmul(
        faer::MatMut::from_row_major_slice_mut(&mut out, rows, cols),
        faer::Accum::Replace,
        faer::MatRef::from_row_major_slice(&ma, dim, rows).transpose(),
        faer::MatRef::from_row_major_slice(&mb, dim, cols),
        scale,
        faer::Par::Seq,
    );
    Some(out)
}
