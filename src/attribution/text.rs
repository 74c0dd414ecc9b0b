//! The per-text half of an explanation: `P = Σ_k w_k ∂e(h_r + α_k Δ)/∂h · Δ`, one column per
//! token, computed in forward mode (one tangent per token, each giving a column of `P`) or in
//! reverse mode (one cotangent per output dimension, each giving a row). Independent of the
//! other text, so it can be cached and reused across pairs.

use crate::attribution::normalization;
use crate::attribution::quadrature::{Node, Quadrature};
use crate::attribution::Progress;
use crate::backend::{Backend, Batch, Role};
use crate::error::{Error, Result};
use crate::model::{TextTokenizer, Tokenized};
use crate::net::block::SplitCotangents;
use crate::net::encoder::{InputCotangents, InputForm, PooledSeeds};
use crate::net::pooling::Pool;
use crate::net::Encoder;

/// Which derivative computes `P`: forward mode pushes `T` token tangents per step through the
/// layers, reverse mode pulls `D` output cotangents per step back through them (xsbert's way);
/// forward is the cheaper while `T` is well below `D`, which sentences are (docs/design.md §1).
/// `Auto` picks, per text, the one that does less arithmetic (`Encoder::reverse_is_cheaper`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Forward,
    Reverse,
    Auto,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Forward => "forward",
            Mode::Reverse => "reverse",
            Mode::Auto => "auto",
        }
    }
}

impl std::str::FromStr for Mode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "forward" => Ok(Mode::Forward),
            "reverse" => Ok(Mode::Reverse),
            "auto" => Ok(Mode::Auto),
            other => Err(Error::argument("--mode", format!("`{other}` (expected forward, reverse or auto)"))),
        }
    }
}

/// What `A` is made from: the integrated Jacobians (the method), or xsbert's decomposition of
/// the mean-pooled dot product into token pairs (the baseline, `decomposition.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    IntegratedJacobians,
    Decomposition,
}

impl Method {
    pub fn name(self) -> &'static str {
        match self {
            Method::IntegratedJacobians => "integrated-jacobians",
            Method::Decomposition => "decomposition",
        }
    }
}

impl std::str::FromStr for Method {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "integrated-jacobians" => Ok(Method::IntegratedJacobians),
            "decomposition" => Ok(Method::Decomposition),
            other => {
                Err(Error::argument("--method", format!("`{other}` (expected integrated-jacobians or decomposition)")))
            }
        }
    }
}

/// How one text is attributed.
#[derive(Debug, Clone, Copy)]
pub struct TextOptions {
    /// Layer whose input is attributed (0 = embedding output).
    pub layer: usize,
    pub quadrature: Quadrature,
    /// An optional further bound on rows (primal and tangent) in flight at once, below what
    /// the backend's memory budget allows; tests use it to force many small passes.
    pub max_rows_per_pass: Option<usize>,
    pub mode: Mode,
    /// Attribute the normalized embedding `n = e/|e|` (cos-exact) instead of `e`: the pooled
    /// tangents (or cotangents) are mapped through the normalization's Jacobian at each node.
    pub normalized: bool,
    /// Integrated Jacobians, or the decomposition baseline (which ignores the layer, the
    /// quadrature and the mode).
    pub method: Method,
    /// Also keep the integrated Jacobian `J = Σ_k w_k ∂e(h_r + α_k Δ)/∂h` (`[D, T, H]`) and `Δ`
    /// on the host. Reverse mode yields `J` row by row; forward mode cannot, so this needs
    /// `mode` reverse.
    pub keep_jacobian: bool,
}

impl TextOptions {
    pub fn new(layer: usize, quadrature: Quadrature) -> Self {
        TextOptions {
            layer,
            quadrature,
            max_rows_per_pass: None,
            mode: Mode::Forward,
            normalized: false,
            method: Method::IntegratedJacobians,
            keep_jacobian: false,
        }
    }

    /// These options as `similarity` needs them: cos-exact attributes the normalized embedding.
    pub fn for_similarity(&self, similarity: crate::attribution::Similarity) -> Self {
        TextOptions { normalized: similarity.normalizes(), ..*self }
    }
}

/// How the `steps × directions` of one text are split into passes that fit in memory: several
/// steps with all directions (token tangents, or output cotangents) when they fit, else one
/// step with as many directions as fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PassPlan {
    pub steps_per_pass: usize,
    pub directions_per_pass: usize,
}

impl PassPlan {
    /// A plan whose passes hold at most `row_budget` rows: `steps × (directions + primal_rows)
    /// × tokens`, the tangents and the primal they share, which takes `primal_rows` tangent
    /// rows' worth of memory per row (2 for an f64 primal beside f32 tangents).
    pub fn new(row_budget: usize, tokens: usize, directions: usize, steps: usize, primal_rows: usize) -> Option<Self> {
        let per_step_direction = tokens.max(1);
        // One direction of one step, and its primal, is the least a pass can hold.
        if row_budget < (1 + primal_rows) * per_step_direction {
            return None;
        }
        let directions_per_pass = (row_budget / per_step_direction - primal_rows).clamp(1, directions.max(1));
        let steps_per_pass =
            (row_budget / ((directions_per_pass + primal_rows) * per_step_direction)).clamp(1, steps.max(1));
        Some(PassPlan { steps_per_pass, directions_per_pass })
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
    /// The mode that computed `P` (forward or reverse; `Auto` resolved for this text); `None`
    /// for the decomposition baseline, which takes no derivative.
    pub mode: Option<Mode>,
    /// With `TextOptions::keep_jacobian`: the integrated Jacobian `J`, `[D, T, H]` row-major
    /// (`P[d, i] = Σ_h J[d, i, h] Δ[i, h]`), and `Δ = h(x) − h(r)`, `[T, H]`.
    pub jacobian: Option<Jacobian>,
    /// The quadrature nodes this text's path was integrated with (the adaptive rule's are its
    /// own); empty for the decomposition.
    pub nodes: Vec<Node>,
}

/// The integrated Jacobian of one text at the attributed layer, and the `Δ` it multiplies.
#[derive(Debug, Clone)]
pub struct Jacobian {
    /// `[D, T, H]` row-major.
    pub values: Vec<f64>,
    /// `[T, H]` row-major.
    pub delta: Vec<f64>,
    /// `H`, the width of the attributed layer's input.
    pub width: usize,
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
        let scale =
            self.embedding.iter().zip(&self.reference_embedding).map(|(e, r)| (e - r).abs()).fold(0.0, f64::max);
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
    tokenizer.reference_framing().ids(len)
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
    let (b, t, layer) = (encoder.backend, tokenized.ids.len(), options.layer);
    let (h, d) = (encoder.hidden(), encoder.embedding_dim());
    let steps = options.quadrature.steps();
    let mode = match options.mode {
        Mode::Auto if encoder.reverse_is_cheaper(layer, t, steps) => Mode::Reverse,
        Mode::Auto => Mode::Forward,
        chosen => chosen,
    };
    let reverse = mode == Mode::Reverse;
    if options.keep_jacobian && !reverse {
        return Err(Error::Internal("the integrated Jacobian is kept in reverse mode only".into()));
    }
    let directions = if reverse { d } else { t };
    let plan = plan_passes(encoder, options, t, directions, reverse)?;
    // A prompt the Pooling leaves out stays out of the reference's pooling too (same length).
    let pool = encoder.pool_for(&tokenized)?;
    let ends = Endpoints::of(encoder, &tokenized.ids, &reference_ids, pool, options)?;

    let nodes = options.quadrature.nodes(&mut |alphas: &[f64]| ends.path_probe(encoder, alphas, options))?;

    progress.add_work((steps * directions * (encoder.num_layers() - layer)) as u64);
    let mut sums = Accumulator {
        encoder,
        delta: &ends.delta,
        layer,
        tokens: t,
        pool,
        // `P` stays on the device as `[T, D]` (row i = column i of P) until every pass is in.
        projection_rows: b.zeros(t * d)?,
        jacobian: options.keep_jacobian.then(|| vec![0.0f64; d * t * h]),
        qkv_delta: None,
    };
    for pass_nodes in nodes.chunks(plan.steps_per_pass) {
        let alphas: Vec<f64> = pass_nodes.iter().map(|n| n.alpha).collect();
        let weights: Vec<f64> = pass_nodes.iter().map(|n| n.weight).collect();
        let primals = b.interpolate(&ends.reference_states, &ends.delta, &alphas)?;
        // Cos-exact: each node's pooled embedding, where the normalization is differentiated.
        let node_embeddings = match options.normalized {
            true => Some(ends.node_embeddings(encoder, &alphas, layer)?),
            false => None,
        };
        for first in (0..directions).step_by(plan.directions_per_pass) {
            let range = first..(first + plan.directions_per_pass).min(directions);
            let count = range.len();
            let batch = Batch { steps: pass_nodes.len(), tangents: count, tokens: t };
            let after_layer = || {
                progress.advance((pass_nodes.len() * count) as u64);
                match progress.interrupted() {
                    true => Err(Error::Interrupted),
                    false => Ok(()),
                }
            };
            let pass = Pass {
                primals: &primals,
                range,
                batch,
                weights: &weights,
                node_embeddings: node_embeddings.as_deref(),
            };
            match reverse {
                false => sums.forward(pass, &after_layer)?,
                true => sums.reverse(pass, &after_layer)?,
            }
        }
    }
    let rows = b.download(&sums.projection_rows)?;
    let mut projection = vec![0.0; d * t];
    for (i, row) in rows.chunks_exact(d).enumerate() {
        for (dim, value) in row.iter().enumerate() {
            projection[dim * t + i] = *value;
        }
    }
    let jacobian = match sums.jacobian {
        Some(values) => Some(Jacobian { values, delta: b.download(&ends.delta)?, width: h }),
        None => None,
    };
    Ok(TextAttribution {
        tokenized,
        reference_ids,
        dim: d,
        projection,
        embedding: ends.embedding,
        reference_embedding: ends.reference_embedding,
        mode: Some(mode),
        jacobian,
        nodes,
    })
}

/// Passes sized by the backend's memory budget (and the caller's optional cap). Each primal row
/// takes `primal_rows` tangent rows' worth of memory: its state, and in reverse mode the tape
/// of every layer it goes through.
fn plan_passes<B: Backend>(
    encoder: &Encoder<'_, B>,
    options: &TextOptions,
    t: usize,
    directions: usize,
    reverse: bool,
) -> Result<PassPlan> {
    let b = encoder.backend;
    let row_scalars = encoder.tangent_row_scalars(t)?;
    let row_budget = row_budget(encoder, options, t)?;
    let primal_width = b.primal_precision().bytes().div_ceil(b.precision().bytes());
    let primal_rows = match reverse {
        false => primal_width,
        true => {
            let tape = (encoder.num_layers() - options.layer) * encoder.tape_row_scalars(t)? * primal_width;
            primal_width + tape.div_ceil(row_scalars)
        }
    };
    PassPlan::new(row_budget, t, directions, options.quadrature.steps(), primal_rows).ok_or_else(|| {
        let needed = (1 + primal_rows) * t * row_scalars * b.precision().bytes();
        let tensor_limit = match b.max_tensor_values() {
            Some(values) if values.saturating_mul(b.precision().bytes()) < b.memory_budget() => {
                format!(", in tensors of at most {values} values (the device's largest binding)")
            }
            _ => String::new(),
        };
        Error::argument(
            "--max-memory",
            format!(
                "the budget of {}{tensor_limit} is too small: one direction of one step of this {t}-token text needs {needed} bytes",
                b.describe_memory_budget()
            ),
        )
    })
}

/// Rows (primal and tangent) a pass over a text of `tokens` tokens may hold: what the backend's
/// memory budget allows, within the caller's optional cap.
fn row_budget<B: Backend>(encoder: &Encoder<'_, B>, options: &TextOptions, tokens: usize) -> Result<usize> {
    let fit = encoder.backend.rows_that_fit(encoder.tangent_row_scalars(tokens)?);
    Ok(fit.min(options.max_rows_per_pass.unwrap_or(usize::MAX)))
}

/// The path's ends at the attributed layer, and the embeddings whose difference `P` splits.
struct Endpoints<T> {
    reference_states: T,
    /// `Δ = h(x) − h(r)`, `[T, H]`.
    delta: T,
    embedding: Vec<f64>,
    reference_embedding: Vec<f64>,
    tokens: usize,
    pool: Pool,
}

impl<T> Endpoints<T> {
    fn of<B: Backend<Tensor = T>>(
        encoder: &Encoder<'_, B>,
        ids: &[u32],
        reference_ids: &[u32],
        pool: Pool,
        options: &TextOptions,
    ) -> Result<Self> {
        let (b, t, h, layer) = (encoder.backend, ids.len(), encoder.hidden(), options.layer);
        // The input and its reference (same length) go through the layers as one batch of two:
        // rows 0..t are the input's, t..2t the reference's.
        let both_ids = [ids, reference_ids].concat();
        let both_states = encoder.states_at(&both_ids, 2, layer)?;
        let rows_of = |seq: usize| (seq * t..(seq + 1) * t).map(|r| r as u32).collect::<Vec<_>>();
        let input_states = b.gather_rows(&both_states, h, &rows_of(0))?;
        let reference_states = b.gather_rows(&both_states, h, &rows_of(1))?;
        let delta = b.sub(&input_states, &reference_states)?;
        drop(input_states);
        let ends = encoder.forward_layers(both_states, layer, encoder.num_layers(), 2, t)?;
        let pooled_ends = b.download(&encoder.embeddings_of(&ends, 2, t, pool)?)?;
        drop(ends);
        let d = encoder.embedding_dim();
        let (mut embedding, mut reference_embedding) = (pooled_ends[..d].to_vec(), pooled_ends[d..].to_vec());
        if encoder.shifts_reference() {
            // An exact model subtracts its reference's output states before pooling:
            // e(x) − e(r), and e(r) = 0. The Jacobian, and so P, is the plain model's.
            embedding.iter_mut().zip(&reference_embedding).for_each(|(e, r)| *e -= r);
            reference_embedding.fill(0.0);
        }
        if options.normalized {
            embedding = normalization::normalized(&embedding, "the text's embedding")?;
            reference_embedding = normalization::normalized(&reference_embedding, "its reference input's")?;
        }
        Ok(Endpoints { reference_states, delta, embedding, reference_embedding, tokens: t, pool })
    }

    /// The attributed embedding (`e`, or `n = e/|e|` for cos-exact) at each of `alphas` along
    /// the path and its derivative along it, `[alphas, D]` each: what the adaptive rule probes.
    /// In chunks that fit the memory budget (a primal and a tangent sequence per α).
    fn path_probe<B: Backend<Tensor = T>>(
        &self,
        encoder: &Encoder<'_, B>,
        alphas: &[f64],
        options: &TextOptions,
    ) -> Result<(Vec<f64>, Vec<f64>)> {
        let (d, t) = (encoder.embedding_dim(), self.tokens);
        let per_chunk = (row_budget(encoder, options, t)? / (3 * t)).max(1);
        let (mut values, mut slopes) = (Vec::with_capacity(alphas.len() * d), Vec::with_capacity(alphas.len() * d));
        for chunk in alphas.chunks(per_chunk) {
            let (e, de) =
                encoder.pooled_path_jvp(&self.reference_states, &self.delta, chunk, options.layer, t, self.pool)?;
            match options.normalized {
                false => {
                    values.extend(e);
                    slopes.extend(de);
                }
                true => {
                    for (e, de) in e.chunks_exact(d).zip(de.chunks_exact(d)) {
                        values.extend(normalization::normalized(e, "the embedding at a point of the path")?);
                        slopes.extend(normalization::apply_jacobian(e, de));
                    }
                }
            }
        }
        Ok((values, slopes))
    }

    /// The pooled embedding `[steps, D]` at each node `h_r + α_k Δ` (cos-exact differentiates
    /// the normalization there); zero at a node is an error.
    fn node_embeddings<B: Backend<Tensor = T>>(
        &self,
        encoder: &Encoder<'_, B>,
        alphas: &[f64],
        layer: usize,
    ) -> Result<Vec<f64>> {
        let x = encoder.backend.interpolate(&self.reference_states, &self.delta, alphas)?;
        let pooled = encoder.pooled_from(x, layer, alphas.len(), self.tokens, self.pool)?;
        for e in pooled.chunks_exact(encoder.embedding_dim()) {
            normalization::nonzero_norm(e, "the embedding at a node of the path")?;
        }
        Ok(pooled)
    }
}

/// One pass: `batch.steps` nodes' primals and `range` of the directions.
struct Pass<'a, T> {
    primals: &'a T,
    range: std::ops::Range<usize>,
    batch: Batch,
    weights: &'a [f64],
    /// Cos-exact: the nodes' pooled embeddings.
    node_embeddings: Option<&'a [f64]>,
}

/// What the passes add up: `P` (as `[T, D]` rows on the device) and, when kept, `J`.
struct Accumulator<'e, 'a, B: Backend> {
    encoder: &'e Encoder<'a, B>,
    delta: &'e B::Tensor,
    layer: usize,
    tokens: usize,
    pool: Pool,
    projection_rows: B::Tensor,
    jacobian: Option<Vec<f64>>,
    /// Reverse mode's `Δ Wqkvᵀ`, made on first use.
    qkv_delta: Option<B::Tensor>,
}

impl<B: Backend> Accumulator<'_, '_, B> {
    /// Forward mode: the pooled tangent of direction i is column i of `∂e·Δ` (of `∂n·Δ` for
    /// cos-exact).
    fn forward(&mut self, pass: Pass<'_, B::Tensor>, after_layer: &dyn Fn() -> Result<()>) -> Result<()> {
        let (b, d, first) = (self.encoder.backend, self.encoder.embedding_dim(), pass.range.start);
        let count = pass.range.len();
        let (primals, delta, layer) = (pass.primals, self.delta, self.layer);
        let mut pooled =
            self.encoder.pooled_token_jvp(primals, delta, pass.range, layer, pass.batch, self.pool, after_layer)?;
        if let Some(nodes) = pass.node_embeddings {
            let mapped = normalization::tangents(&b.download(&pooled)?, nodes, count, d);
            pooled = b.upload(&mapped, Role::Activations { len: mapped.len() })?;
        }
        // Already pooled: one "token" per tangent sequence.
        let pooled_batch = Batch { tokens: 1, ..pass.batch };
        b.pool_accumulate(&mut self.projection_rows, &pooled, pooled_batch, d, pass.weights, first)
    }

    /// Reverse mode: cotangent d of every step is e_d at the pooled output (`N_k e_d` for
    /// cos-exact); pulled back to layer L it is row d of the Jacobian, and its product with Δ
    /// token by token is row d of P.
    fn reverse(&mut self, pass: Pass<'_, B::Tensor>, after_layer: &dyn Fn() -> Result<()>) -> Result<()> {
        let (b, h, first, batch, weights) =
            (self.encoder.backend, self.encoder.hidden(), pass.range.start, pass.batch, pass.weights);
        let split = self.jacobian.is_none() && self.encoder.splits_input_cotangents(self.layer);
        let form = if split { InputForm::Split } else { InputForm::Full };
        let dense_seeds = match pass.node_embeddings {
            Some(nodes) => {
                let seeds = normalization::seeds(nodes, pass.range.clone(), self.encoder.embedding_dim());
                Some(b.upload(&seeds, Role::Activations { len: seeds.len() })?)
            }
            None => None,
        };
        let seeds = match &dense_seeds {
            Some(seeds) => PooledSeeds::Dense(seeds),
            None => PooledSeeds::Units(pass.range),
        };
        match self.encoder.pooled_vjp(pass.primals, seeds, self.layer, batch, self.pool, form, after_layer)? {
            InputCotangents::Full(cotangents) => {
                b.cotangent_accumulate(&mut self.projection_rows, &cotangents, self.delta, batch, h, weights, first)?;
                if let Some(jacobian) = self.jacobian.as_mut() {
                    accumulate_jacobian(jacobian, &b.download(&cotangents)?, batch, h, weights, first);
                }
            }
            InputCotangents::Split(SplitCotangents { residual, qkv }) => {
                // x̄ · Δ = s̄ · Δ + q̄k̄v̄ · (Δ Wqkvᵀ).
                let qkv_delta = match &self.qkv_delta {
                    Some(projected) => projected,
                    None => self.qkv_delta.insert(self.encoder.qkv_projection(self.delta, self.layer, self.tokens)?),
                };
                b.cotangent_accumulate(&mut self.projection_rows, &residual, self.delta, batch, h, weights, first)?;
                b.cotangent_accumulate(&mut self.projection_rows, &qkv, qkv_delta, batch, 3 * h, weights, first)?;
            }
        }
        Ok(())
    }
}

/// `jacobian[first_dim + c, i, h] += weights[k] · cotangents[k, c, i, h]` (`jacobian` is
/// `[D, T, H]`, `cotangents` `[steps, count, T, H]`), steps in order.
fn accumulate_jacobian(
    jacobian: &mut [f64],
    cotangents: &[f64],
    batch: Batch,
    width: usize,
    weights: &[f64],
    first_dim: usize,
) {
    let block = batch.tokens * width;
    for (k, &weight) in weights.iter().enumerate() {
        for c in 0..batch.tangents {
            let source = &cotangents[(k * batch.tangents + c) * block..][..block];
            let target = &mut jacobian[(first_dim + c) * block..][..block];
            target.iter_mut().zip(source).for_each(|(j, &g)| *j += weight * g);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::PassPlan;

    #[test]
    fn pass_plans_fit_the_budget_and_cover_the_work() {
        for primal_rows in [1, 2] {
            for tokens in [1, 2, 7, 12, 64] {
                for steps in [1, 5, 50] {
                    let budgets = [3 * tokens, 3 * tokens + 1, 2 * tokens * tokens, 10 * tokens * tokens, 1 << 20];
                    for budget in budgets.into_iter().filter(|&b| b >= (1 + primal_rows) * tokens) {
                        let plan = PassPlan::new(budget, tokens, tokens, steps, primal_rows).unwrap();
                        let rows = plan.steps_per_pass * (plan.directions_per_pass + primal_rows) * tokens;
                        assert!(rows <= budget, "{plan:?} holds {rows} rows > {budget}");
                        assert!(plan.directions_per_pass <= tokens && plan.steps_per_pass <= steps);
                        // Several steps per pass only when all directions fit.
                        assert!(plan.steps_per_pass == 1 || plan.directions_per_pass == tokens, "{plan:?}");
                    }
                    assert_eq!(PassPlan::new((1 + primal_rows) * tokens - 1, tokens, tokens, steps, primal_rows), None);
                }
            }
        }
    }
}
