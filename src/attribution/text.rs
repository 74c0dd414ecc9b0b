//! The per-text half of an explanation: `P = Σ_k w_k ∂e(h_r + α_k Δ)/∂h · Δ`, one column per
//! token, computed in forward mode. Independent of the other text, so it can be cached and
//! reused across pairs.

use crate::attribution::quadrature::Quadrature;
use crate::attribution::Progress;
use crate::backend::{Backend, Batch};
use crate::error::Result;
use crate::model::{TextTokenizer, Tokenized};
use crate::net::Encoder;

/// How one text is attributed.
#[derive(Debug, Clone, Copy)]
pub struct TextOptions {
    /// Layer whose input is attributed (0 = embedding output).
    pub layer: usize,
    pub quadrature: Quadrature,
    /// Upper bound on tangent rows (`steps × directions × tokens`) in flight at once: the
    /// quadrature nodes, and for long texts the token directions, are processed in passes that
    /// fit, so memory stays bounded at any length and step count.
    pub max_tangent_rows: usize,
}

impl TextOptions {
    pub fn new(layer: usize, quadrature: Quadrature) -> Self {
        TextOptions { layer, quadrature, max_tangent_rows: 1 << 14 }
    }
}

/// `P` of one text and what is needed to check it.
#[derive(Debug, Clone)]
pub struct TextAttribution {
    pub tokenized: Tokenized,
    pub reference_ids: Vec<u32>,
    /// Embedding dimension `D` (rows of `P`).
    pub dim: usize,
    /// `P`, `[D, T]` row-major: `projection[d * T + i]`.
    pub projection: Vec<f64>,
    /// `e(x)`, unnormalized.
    pub embedding: Vec<f64>,
    /// `e(r)` of the reference input.
    pub reference_embedding: Vec<f64>,
}

impl TextAttribution {
    pub fn tokens(&self) -> usize {
        self.tokenized.ids.len()
    }

    /// `Σ_i P_di`, which the integral makes equal to `e_d(x) − e_d(r)`.
    pub fn column_sums(&self) -> Vec<f64> {
        self.projection.chunks(self.tokens()).map(|row| row.iter().sum()).collect()
    }

    /// `max_d |Σ_i P_di − (e_d(x) − e_d(r))|`: zero up to quadrature error.
    pub fn identity_error(&self) -> f64 {
        self.column_sums()
            .iter()
            .zip(self.embedding.iter().zip(&self.reference_embedding))
            .map(|(sum, (e, r))| (sum - (e - r)).abs())
            .fold(0.0, f64::max)
    }

    /// The identity error relative to `max_d |e_d(x) − e_d(r)|`.
    pub fn relative_identity_error(&self) -> f64 {
        let scale = self.embedding.iter().zip(&self.reference_embedding).map(|(e, r)| (e - r).abs()).fold(0.0, f64::max);
        if scale > 0.0 {
            self.identity_error() / scale
        } else {
            self.identity_error()
        }
    }
}

/// The reference input for ids `x`: same length, the tokenizer's own framing tokens at both
/// ends and padding in between (`[CLS] [PAD] … [PAD] [SEP]` for BERT).
pub fn reference_ids(tokenizer: &TextTokenizer, len: usize) -> Vec<u32> {
    let mut ids = vec![tokenizer.pad_id; len];
    if let Some(first) = ids.first_mut() {
        *first = tokenizer.open_id;
    }
    if len > 1 {
        ids[len - 1] = tokenizer.close_id;
    }
    ids
}

/// `P` of one tokenized text (`tokenizer` supplies the reference input's special ids).
pub fn attribute_text<B: Backend>(
    encoder: &Encoder<'_, B>,
    tokenizer: &TextTokenizer,
    tokenized: Tokenized,
    options: &TextOptions,
    progress: &dyn Progress,
) -> Result<TextAttribution> {
    encoder.check_layer(options.layer)?;
    let reference_ids = reference_ids(tokenizer, tokenized.ids.len());
    let (b, t, h, layer) = (encoder.backend, tokenized.ids.len(), encoder.hidden(), options.layer);

    let input_states = encoder.states_at(&tokenized.ids, 1, layer)?;
    let reference_states = encoder.states_at(&reference_ids, 1, layer)?;
    let delta = b.sub(&input_states, &reference_states)?;
    let pooled_end = |states| -> Result<Vec<f64>> {
        let out = encoder.forward_layers(states, layer, encoder.num_layers(), 1, t)?;
        b.download(&b.mean_pool(&out, 1, t, h)?)
    };
    let embedding = pooled_end(input_states)?;

    // Work in passes of at most `max_tangent_rows` tangent rows: several steps with all token
    // directions when they fit, else one step with as many directions as fit.
    let nodes = options.quadrature.nodes();
    progress.add_work((nodes.len() * t * (encoder.num_layers() - layer)) as u64);
    let rows_budget = options.max_tangent_rows.max(1);
    let directions_per_pass = (rows_budget / t).clamp(1, t);
    let steps_per_pass = (rows_budget / (directions_per_pass * t)).clamp(1, nodes.len());
    let mut projection = vec![0.0; h * t];
    for chunk in nodes.chunks(steps_per_pass) {
        let alphas: Vec<f64> = chunk.iter().map(|n| n.alpha).collect();
        let primals = b.interpolate(&reference_states, &delta, &alphas)?;
        for first in (0..t).step_by(directions_per_pass) {
            let directions = first..(first + directions_per_pass).min(t);
            let count = directions.len();
            let batch = Batch { steps: chunk.len(), tangents: count, tokens: t };
            let tangents = b.token_tangents(&delta, chunk.len(), t, h, directions.clone())?;
            let after_layer = || progress.advance((chunk.len() * count) as u64);
            let (_, d_states) = encoder.jvp_layers(&primals, &tangents, layer, batch, &after_layer)?;
            // Mean pooling is linear: the pooled tangent of direction i is column i of ∂e·Δ.
            let pooled = b.download(&b.mean_pool(&d_states, chunk.len() * count, t, h)?)?;
            for (k, node) in chunk.iter().enumerate() {
                for (m, i) in directions.clone().enumerate() {
                    let column = &pooled[(k * count + m) * h..][..h];
                    for (d, value) in column.iter().enumerate() {
                        projection[d * t + i] += node.weight * value;
                    }
                }
            }
        }
    }
    let reference_embedding = pooled_end(reference_states)?;
    Ok(TextAttribution { tokenized, reference_ids, dim: h, projection, embedding, reference_embedding })
}
