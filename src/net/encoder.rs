//! The whole encoder on one backend: embeddings, the layer stack split at any layer, pooling
//! and the modules after it. Knows the architecture only through its configuration (position
//! ids, token types, MPNet's relative position bias) and the network its family describes
//! (`net::families`).

use std::ops::Range;
use std::sync::{Arc, Mutex, PoisonError};

use crate::backend::{unit_rows, Backend, Batch, Role, ScoreMods};
use crate::error::{Error, Result};
use crate::model::{AttentionMask, EncoderConfig, Pooling, PositionIds, ReferenceFraming, SentenceModel, Tokenized};
use crate::net::block::{Block, CotangentsIn, Geometry, TangentsIn};
pub use crate::net::block::{InputCotangents, InputForm};
use crate::net::embeddings::Embeddings;
use crate::net::families::Network;
use crate::net::flops::{attribution_flops, reverse_is_cheaper, AttributionFlops, BlockCost, PooledTail};
use crate::net::heads::{DenseActivation, Head, Heads, HeadsTape};
use crate::net::layer::LayerShape;
use crate::net::packing::Packing;
use crate::net::pooling::{pool_host, pool_jvp, pool_vjp, Pool};
use crate::net::relative_bias;
use crate::net::shift::ShiftedBatch;
use crate::params::{EncoderParams, HostTensor, Weights};

/// Uploads host weights to `backend`, each told its role; a scale stored as `w` and applied
/// as `1 + w` (Gemma's) is uploaded as applied (`upload_unit_offset`).
pub fn upload_params<B: Backend>(backend: &B, params: &EncoderParams<HostTensor>) -> Result<EncoderParams<B::Tensor>> {
    params.try_map(|t, role| match role {
        Role::UnitOffsetScale { .. } => backend.upload_unit_offset(t.data()),
        role => backend.upload_host(t, role),
    })
}

/// The cotangents reverse mode starts from at the pooled output, `[steps, cotangents, D]`.
pub enum PooledSeeds<'a, T> {
    /// Cotangent `c` of every step is the unit vector `e_{dims.start + c}`.
    Units(Range<usize>),
    /// Any cotangents.
    Dense(&'a T),
}

/// The cotangents above the layer `pooled_vjp` is at: the pooled output's unit cotangents
/// still in structured form, or dense rows.
enum Above<T> {
    PooledMeanUnits(Range<usize>),
    Dense(T),
}

/// The score biases made for one sequence length, one per mask.
struct ScoreBiases<T> {
    tokens: usize,
    by_mask: Vec<(AttentionMask, Arc<T>)>,
}

pub struct Encoder<'b, B: Backend> {
    pub backend: &'b B,
    pub config: EncoderConfig,
    pub pooling: Pooling,
    /// Whether pooling reads a prompt's tokens (the Pooling config's `include_prompt`).
    include_prompt: bool,
    /// What sums into the first layer's input (`net::embeddings`).
    embeddings: Embeddings,
    /// The block each layer runs, described once for the family (`net::families`): the
    /// family's block, the first layer's where it differs, the last ending in the final norm
    /// where the family has one.
    blocks: Vec<Block>,
    /// The modules after pooling (`net::heads`); their Dense weights are `params.heads`.
    heads: Vec<Head>,
    /// What the flop counts read of the blocks (`Block::cost`): the first layer's, with the
    /// pooled top of the last layer's.
    cost: BlockCost,
    params: EncoderParams<B::Tensor>,
    positions: PositionIds,
    /// An exact model's reference framing: its output states are subtracted before pooling.
    shifted_reference: Option<ReferenceFraming>,
    /// The score biases of the last sequence length asked for, one per mask the layers use
    /// (MPNet's and T5's relative position bias is one `[heads, T, T]` table per length,
    /// shared by every layer and sequence; causal and windowed layers add their mask).
    score_bias: Mutex<Option<ScoreBiases<B::Tensor>>>,
}

impl<'b, B: Backend> Encoder<'b, B> {
    /// Uploads the model's weights to `backend`, each told its role.
    pub fn new(backend: &'b B, model: &SentenceModel) -> Result<Self> {
        Self::with_params(backend, model, &model.params, model.shifted_reference)
    }

    /// `new` with other weights of the same shapes (a training run's current ones), shifting
    /// the reference or not.
    pub fn with_params(
        backend: &'b B,
        model: &SentenceModel,
        params: &EncoderParams<HostTensor>,
        shifted_reference: bool,
    ) -> Result<Self> {
        Self::build(backend, model, params, shifted_reference, Network::of(model))
    }

    /// The model's weights run as `network` describes them instead of as its family and folder
    /// do: how a new structure is tried on existing weights (the tests' pre-norm variants and
    /// heads) before a family describes it. The weights must have the shapes the blocks read
    /// (a walk reports any that do not), a final norm exactly where `network` has one, and one
    /// Dense weight per Dense module.
    pub fn with_network(backend: &'b B, model: &SentenceModel, network: Network) -> Result<Self> {
        Self::build(backend, model, &model.params, model.shifted_reference, network)
    }

    fn build(
        backend: &'b B,
        model: &SentenceModel,
        params: &EncoderParams<HostTensor>,
        shifted_reference: bool,
        network: Network,
    ) -> Result<Self> {
        match (network.final_norm, &params.final_norm) {
            (Some(_), None) => return Err(Error::Internal("the network ends in a final norm the weights lack".into())),
            (None, Some(_)) => return Err(Error::Internal("the weights have a final norm the network lacks".into())),
            _ => {}
        }
        let blocks = network.layer_blocks(params.layers.len())?;
        network.embeddings.check(&params.embeddings)?;
        Heads::new(&network.heads, &params.heads).check(model.config.hidden_size)?;
        if shifted_reference {
            // The shift is of the output states, before pooling: through linear Dense modules
            // it is the embeddings' difference (what `embed` and the attribution subtract),
            // and the reference's embedding stays zero; through a bias or an activation not.
            model.dense.iter().try_for_each(|module| module.check_linear("an exact model"))?;
            let nonlinear =
                |head: &Head| matches!(head, Head::Dense { activation } if *activation != DenseActivation::Identity);
            if network.heads.iter().any(nonlinear) {
                return Err(Error::Internal("an exact model with a Dense activation after pooling".into()));
            }
        }
        let cost = {
            let (first, last) = match (params.layers.first(), params.layers.last()) {
                (Some(first), Some(last)) => (first, last),
                _ => return Err(Error::Internal("an encoder without layers".into())),
            };
            let heads = LayerShape::of(&model.config).heads;
            let (first_block, last_block) = (&blocks[0], &blocks[blocks.len() - 1]);
            let top = last_block.cost(Weights { layer: last, final_norm: params.final_norm.as_ref() }, heads);
            BlockCost {
                pooled_out: top.pooled_out,
                after_attention_per_row: top.after_attention_per_row,
                ..first_block.cost(first, heads)
            }
        };
        let params = upload_params(backend, params)?;
        let config = model.config.clone();
        let positions = config.position_ids();
        let shifted_reference = shifted_reference.then(|| model.tokenizer.reference_framing());
        Ok(Encoder {
            backend,
            config,
            pooling: network.pooling,
            include_prompt: model.include_prompt,
            embeddings: network.embeddings,
            blocks,
            heads: network.heads,
            cost,
            params,
            positions,
            shifted_reference,
            score_bias: Mutex::new(None),
        })
    }

    /// The block layer `layer` runs, its weights (the last layer's with the final norm, where
    /// the family has one) and its geometry (its rotary frequency).
    fn layer(&self, layer: usize) -> (&Block, Weights<'_, B::Tensor>, Geometry) {
        let params = &self.params.layers[layer];
        let last = layer + 1 == self.num_layers();
        let final_norm = self.params.final_norm.as_ref().filter(|_| last);
        let geometry = self.shape().geometry_of(&self.config.layers[layer]);
        (&self.blocks[layer], Weights { layer: params, final_norm }, geometry)
    }

    /// Whether reverse mode may leave the input cotangents of layer `layer` as two terms
    /// (`InputForm::Split`): its block projects its input straight into attention (a rotary
    /// turn inside attention hands the projection its cotangents turned back).
    pub fn splits_input_cotangents(&self, layer: usize) -> bool {
        self.blocks.get(layer).is_some_and(|block| block.input_projection().is_some())
    }

    /// What attention adds to the scores of sequences of `tokens` tokens at layer `layer`:
    /// MPNet's and T5's relative position bias `bias[h, i, j] = table[bucket(j − i), h]` or
    /// JinaBERT's ALiBi `−m_h |i − j|`, and
    /// the layer's mask where it is causal or windowed (`relative_bias::mask_bias`); made once
    /// per length and mask, `None` where there is neither.
    pub fn score_bias(&self, tokens: usize, layer: usize) -> Result<Option<Arc<B::Tensor>>> {
        let mask = self.config.layers.get(layer).map_or(AttentionMask::Full, |l| l.mask);
        let table = self.params.relative_attention_bias.as_ref();
        // Checked on a one-token sequence first, so that a layer without a bias costs nothing.
        if relative_bias::layer_score_bias(&self.config, table, mask, 1).is_none() {
            return Ok(None);
        }
        let mut cached = self.score_bias.lock().unwrap_or_else(PoisonError::into_inner);
        let biases = match cached.as_mut().filter(|c| c.tokens == tokens) {
            Some(biases) => biases,
            None => cached.insert(ScoreBiases { tokens, by_mask: Vec::new() }),
        };
        if let Some((_, bias)) = biases.by_mask.iter().find(|(m, _)| *m == mask) {
            return Ok(Some(bias.clone()));
        }
        let heads = self.config.num_heads;
        let bias = relative_bias::layer_score_bias(&self.config, table, mask, tokens).unwrap_or_default();
        let bias = Arc::new(self.backend.upload(&bias, Role::ScoreBias { heads, tokens })?);
        biases.by_mask.push((mask, bias.clone()));
        Ok(Some(bias))
    }

    /// How a tokenized text is pooled: the model's mode, leaving out the text's prompt where
    /// the Pooling does (`include_prompt: false`; sentence-transformers' `prompt_length`).
    pub fn pool_for(&self, text: &Tokenized) -> Result<Pool> {
        let pool = Pool { mode: self.pooling, skipped: text.unpooled_tokens(self.include_prompt) };
        pool.check(text.ids.len())?;
        Ok(pool)
    }

    /// Pooling of every token, whatever the model's `include_prompt` (texts without a prompt).
    pub fn pool_all(&self) -> Pool {
        Pool::all(self.pooling)
    }

    /// Pools `[seqs, tokens, hidden]` token states into `[seqs, hidden]` vectors (before the
    /// modules after pooling: `embeddings_of` runs those too).
    pub fn pool(&self, pool: Pool, states: &B::Tensor, seqs: usize, tokens: usize) -> Result<B::Tensor> {
        crate::net::pooling::pool(self.backend, pool, states, seqs, tokens, self.hidden())
    }

    /// The attributed embeddings `[seqs, D]` of `[seqs, tokens, hidden]` output token states:
    /// pooled by `pool`, then through the Dense modules after pooling.
    pub fn embeddings_of(&self, states: &B::Tensor, seqs: usize, tokens: usize, pool: Pool) -> Result<B::Tensor> {
        Ok(self.head_forward(self.pool(pool, states, seqs, tokens)?, seqs)?.0)
    }

    /// The attributed embeddings' tangents `[steps · tangents, D]` from the output states'
    /// tangents `d_states` (`[steps, tangents, tokens, hidden]`) at the states `states`
    /// (`[steps, tokens, hidden]`): pooling's JVP, then the heads'. The plain path's top, which
    /// the structured passes are checked against.
    pub fn embeddings_jvp(
        &self,
        states: &B::Tensor,
        d_states: &B::Tensor,
        batch: Batch,
        pool: Pool,
    ) -> Result<B::Tensor> {
        let pooled = pool_jvp(self.backend, pool, states, d_states, batch, self.hidden())?;
        let tape = self.head_tape(batch.steps, || self.pool(pool, states, batch.steps, batch.tokens))?;
        self.heads().jvp(self.backend, &tape, pooled, batch.tangents)
    }

    /// The modules after pooling with their weights (checked against each other in `build`).
    fn heads(&self) -> Heads<'_, B::Tensor> {
        Heads::new(&self.heads, &self.params.heads)
    }

    /// The Dense modules after pooling on pooled vectors `[rows, hidden]`, and what their
    /// derivatives read.
    fn head_forward(&self, pooled: B::Tensor, rows: usize) -> Result<(B::Tensor, HeadsTape)> {
        self.heads().forward(self.backend, pooled, rows)
    }

    /// What the Dense modules' derivatives read at the pooled vectors `pooled()` of `rows`
    /// rows: made only where an activation is not the identity.
    fn head_tape(&self, rows: usize, pooled: impl FnOnce() -> Result<B::Tensor>) -> Result<HeadsTape> {
        let heads = self.heads();
        match heads.needs_primal() {
            true => Ok(heads.forward(self.backend, pooled()?, rows)?.1),
            false => Ok(heads.tape_without_primal(rows)),
        }
    }

    pub fn hidden(&self) -> usize {
        self.config.hidden_size
    }

    /// `D`, the width of the attributed embedding: the hidden width, or the last Dense
    /// module's output.
    pub fn embedding_dim(&self) -> usize {
        self.heads().output_width(self.hidden())
    }

    /// The Matryoshka truncation (`--truncate-dim`): the attributed embedding is the first
    /// `dims` values; `embed` leaves it to its caller, after Normalize.
    pub fn truncation(&self) -> Option<usize> {
        self.heads().truncation()
    }

    /// Whether the network ends in Normalize (which `embed` applies, as `encode` does).
    pub fn normalizes(&self) -> bool {
        self.heads().normalizes()
    }

    pub fn num_layers(&self) -> usize {
        self.config.num_layers
    }

    /// Scalars one tangent row needs at the peak of a layer's JVP at `tokens` tokens (for the
    /// memory budget), as the blocks' descriptions say (`Block::tangent_row_scalars`).
    pub fn tangent_row_scalars(&self, tokens: usize) -> Result<usize> {
        let heads = self.shape().heads;
        let mut most = 0;
        for layer in [0, self.num_layers().saturating_sub(1)] {
            let (block, weights, _) = self.layer(layer);
            most = most.max(block.tangent_row_scalars(weights, heads, tokens)?);
        }
        Ok(most)
    }

    /// Scalars one primal row keeps per layer for reverse mode (`BlockTape`) at `tokens` tokens,
    /// as the block's description says (`Block::tape_row_scalars`).
    pub fn tape_row_scalars(&self, tokens: usize) -> Result<usize> {
        let mut most = 0;
        for layer in 0..self.num_layers() {
            let (block, weights, _) = self.layer(layer);
            most = most.max(block.tape_row_scalars(weights, self.shape().heads, tokens)?);
        }
        Ok(most)
    }

    /// Whether reverse mode does fewer flops than forward mode for a text of `tokens` tokens
    /// attributed at `layer` with `steps` steps, counted as each pass runs (`net::flops`):
    /// forward mode's `T` token tangents against reverse mode's `D` output cotangents per
    /// step, forward up to `T ≈ D`, reverse beyond (docs/performance.md, "Forward or reverse:
    /// the crossover").
    pub fn reverse_is_cheaper(&self, layer: usize, tokens: usize, steps: usize) -> bool {
        // Dense modules make the pooled cotangents dense: no rank-one start (`pooled_vjp`).
        let mean = self.pooling == Pooling::Mean && !self.heads().any_dense();
        let layers = self.num_layers().saturating_sub(layer);
        reverse_is_cheaper(self.cost, layers, tokens, steps, self.embedding_dim(), mean, self.pooled_tail())
    }

    /// Flops of attributing one text of `tokens` tokens at `layer` with `steps` steps.
    pub fn attribution_flops(&self, layer: usize, tokens: usize, steps: usize) -> AttributionFlops {
        attribution_flops(self.cost, self.num_layers().saturating_sub(layer), tokens, steps, self.pooled_tail())
    }

    /// How forward mode's last layer reaches the pooled vector (`pooled_token_jvp`).
    fn pooled_tail(&self) -> PooledTail {
        match self.pooling {
            Pooling::Mean => PooledTail::Mean,
            Pooling::Cls | Pooling::LastToken => PooledTail::Row,
            _ => PooledTail::Full,
        }
    }

    pub fn shape(&self) -> LayerShape {
        LayerShape::of(&self.config)
    }

    /// The embeddings (`net::embeddings`) for `seqs` equal-length id sequences laid end
    /// to end: `[seqs, tokens, hidden]`.
    pub fn embed_tokens(&self, ids: &[u32], seqs: usize) -> Result<B::Tensor> {
        let tokens = ids.len() / seqs.max(1);
        if tokens == 0 || tokens * seqs != ids.len() {
            return Err(Error::argument("ids", format!("{} ids do not split into {seqs} sequences", ids.len())));
        }
        self.check_tokens(tokens)?;
        let positions: Vec<u32> = ids.chunks(tokens).flat_map(|seq| self.positions.for_ids(seq)).collect();
        self.embed_rows(ids, &positions)
    }

    /// Fails unless a sequence of `tokens` tokens has a position embedding for every token.
    fn check_tokens(&self, tokens: usize) -> Result<()> {
        let limit = self.config.max_tokens();
        if tokens <= limit {
            return Ok(());
        }
        Err(Error::argument(
            "text",
            format!(
                "{tokens} tokens exceed the {limit} that max_position_embeddings {} allows",
                self.config.max_position_embeddings
            ),
        ))
    }

    /// The embeddings of token rows with the given position ids.
    fn embed_rows(&self, ids: &[u32], positions: &[u32]) -> Result<B::Tensor> {
        let (b, e) = (self.backend, &self.params.embeddings);
        Ok(self.embeddings.forward(b, e, self.hidden(), self.config.layer_norm_eps, ids, positions)?.0)
    }

    /// Runs layers `from..to` forward on `[seqs, tokens, hidden]`.
    pub fn forward_layers(
        &self,
        x: B::Tensor,
        from: usize,
        to: usize,
        seqs: usize,
        tokens: usize,
    ) -> Result<B::Tensor> {
        match from < to {
            true => self.run_layers(&x, from..to, seqs, tokens),
            false => Ok(x),
        }
    }

    /// `forward_layers` through at least one layer, from a borrowed input.
    fn run_layers(&self, x: &B::Tensor, layers: Range<usize>, seqs: usize, tokens: usize) -> Result<B::Tensor> {
        let mut y: Option<B::Tensor> = None;
        for layer in layers {
            let (block, weights, geometry) = self.layer(layer);
            let bias = self.score_bias(tokens, layer)?;
            let scores = ScoreMods { bias: bias.as_deref(), key_mask: None };
            let input = y.as_ref().unwrap_or(x);
            y = Some(block.forward(self.backend, weights, geometry, input, seqs, tokens, scores)?);
        }
        y.ok_or_else(|| Error::Internal("a forward pass through no layers".into()))
    }

    /// Fails unless `layer` names a layer of this model (a split point for attribution).
    pub fn check_layer(&self, layer: usize) -> Result<()> {
        let n = self.num_layers();
        if layer < n {
            return Ok(());
        }
        Err(Error::argument("--layer", format!("{layer} is out of range: the model has {n} layers (0..={})", n - 1)))
    }

    /// Runs layers `from..` (at least one) on primals and any tangents `dx` together; returns
    /// the final `(states, tangents)`. `after_layer` is called as each layer finishes; its error
    /// (the caller was interrupted) ends the pass. The plain
    /// path: every tangent row through every GEMM.
    pub fn jvp_layers(
        &self,
        x: &B::Tensor,
        dx: &B::Tensor,
        from: usize,
        batch: Batch,
        after_layer: &dyn Fn() -> Result<()>,
    ) -> Result<(B::Tensor, B::Tensor)> {
        self.check_layer(from)?;
        let (mut x, mut dx) = self.layer_jvp(from, x, TangentsIn::Dense(dx), batch)?;
        after_layer()?;
        for layer in from + 1..self.num_layers() {
            (x, dx) = self.layer_jvp(layer, &x, TangentsIn::Dense(&dx), batch)?;
            after_layer()?;
        }
        Ok((x, dx))
    }

    /// Layer `layer`'s primal and JVP (`Block::jvp`) under its own scores.
    fn layer_jvp(
        &self,
        layer: usize,
        x: &B::Tensor,
        dx: TangentsIn<'_, B::Tensor>,
        batch: Batch,
    ) -> Result<(B::Tensor, B::Tensor)> {
        let (block, weights, geometry) = self.layer(layer);
        let bias = self.score_bias(batch.tokens, layer)?;
        let scores = ScoreMods { bias: bias.as_deref(), key_mask: None };
        block.jvp(self.backend, weights, geometry, x, dx, batch, scores)
    }

    /// The attribution pass: runs layers `from..` on the primals `x` (`[steps, tokens, hidden]`)
    /// with the token-direction tangents `directions` of `delta` (`[tokens, hidden]`), and
    /// returns the attributed embeddings' tangents, `[steps, directions, D]`. Equal to
    /// `jvp_layers` on `token_tangents(delta, …)` followed by pooling and the heads, but
    /// exploiting what a generic autodiff cannot see: the first layer's tangents are `T`
    /// distinct rows, and, under mean pooling, the last layer only needs their token mean.
    #[allow(clippy::too_many_arguments)]
    pub fn pooled_token_jvp(
        &self,
        x: &B::Tensor,
        delta: &B::Tensor,
        directions: Range<usize>,
        from: usize,
        batch: Batch,
        pool: Pool,
        after_layer: &dyn Fn() -> Result<()>,
    ) -> Result<B::Tensor> {
        self.check_layer(from)?;
        pool.check(batch.tokens)?;
        let (b, h) = (self.backend, self.hidden());
        let first_in = TangentsIn::TokenDirections { delta, directions };
        // Under mean pooling the last layer reduces its rows before its output GEMM; under CLS
        // and last-token pooling it carries only the pooled row after attention
        // (`Block::jvp_at_row`); the other poolings take every layer's full JVP and pool after it.
        // (A prompt left out of a mean makes it a weighted sum: the general path.)
        let row = pool.picked_row(batch.tokens);
        let pooled_last = pool.is_full_mean() || row.is_some();
        let full_layers = if pooled_last { self.num_layers() - 1 } else { self.num_layers() };
        // The pooled tangents, and the pooled primal where the last layer made it.
        let pooled_tail = |x: &B::Tensor, dx: TangentsIn<'_, B::Tensor>| -> Result<(B::Tensor, Option<B::Tensor>)> {
            let (block, weights, geometry) = self.layer(full_layers);
            let bias = self.score_bias(batch.tokens, full_layers)?;
            let scores = ScoreMods { bias: bias.as_deref(), key_mask: None };
            let pooled = match row {
                Some(row) => {
                    let (y, dy) = block.jvp_at_row(b, weights, geometry, x, dx, batch, scores, row)?;
                    (dy, Some(y))
                }
                None => (block.pooled_jvp(b, weights, geometry, x, dx, batch, scores)?, None),
            };
            after_layer()?;
            Ok(pooled)
        };
        // The heads' tangents read the pooled primal where an activation is not the identity;
        // under mean pooling the last layer's primal output is not otherwise made.
        let head_tape = |x: &B::Tensor, layers: Range<usize>, pooled: Option<B::Tensor>| {
            self.head_tape(batch.steps, || match pooled {
                Some(pooled) => Ok(pooled),
                None => {
                    let output = match layers.is_empty() {
                        true => None,
                        false => Some(self.run_layers(x, layers, batch.steps, batch.tokens)?),
                    };
                    self.pool(pool, output.as_ref().unwrap_or(x), batch.steps, batch.tokens)
                }
            })
        };
        let (pooled, tape) = if from == full_layers {
            let (pooled, primal) = pooled_tail(x, first_in)?;
            (pooled, head_tape(x, from..self.num_layers(), primal)?)
        } else {
            let (mut x, mut dx) = self.layer_jvp(from, x, first_in, batch)?;
            after_layer()?;
            for layer in from + 1..full_layers {
                (x, dx) = self.layer_jvp(layer, &x, TangentsIn::Dense(&dx), batch)?;
                after_layer()?;
            }
            match pooled_last {
                true => {
                    let (pooled, primal) = pooled_tail(&x, TangentsIn::Dense(&dx))?;
                    (pooled, head_tape(&x, full_layers..self.num_layers(), primal)?)
                }
                false => (pool_jvp(b, pool, &x, &dx, batch, h)?, head_tape(&x, 0..0, None)?),
            }
        };
        self.heads().jvp(b, &tape, pooled, batch.tangents)
    }

    /// The reverse attribution pass: runs layers `from..` forward on the primals `x`
    /// (`[steps, tokens, hidden]`), keeping what each layer's VJP reads, then takes the
    /// cotangents `seeds` of the attributed embeddings (unit vectors `e_d`, `d ∈ dims`, at every
    /// step, or any) back through the heads, pooling and the layers to the input of layer `from`:
    /// `[steps, cotangents, tokens, hidden]`, a unit cotangent's rows being row `d` of the
    /// Jacobian at its step's primal (`InputForm::Full`), or those rows as two terms
    /// (`InputForm::Split`).
    #[allow(clippy::too_many_arguments)]
    pub fn pooled_vjp(
        &self,
        x: &B::Tensor,
        seeds: PooledSeeds<'_, B::Tensor>,
        from: usize,
        batch: Batch,
        pool: Pool,
        input: InputForm,
        after_layer: &dyn Fn() -> Result<()>,
    ) -> Result<InputCotangents<B::Tensor>> {
        self.check_layer(from)?;
        let (b, h) = (self.backend, self.hidden());
        let layers = from..self.num_layers();
        let mut tapes = Vec::with_capacity(layers.len());
        let mut states: Option<B::Tensor> = None;
        for layer in layers.clone() {
            let input = states.as_ref().unwrap_or(x);
            let (block, weights, geometry) = self.layer(layer);
            let bias = self.score_bias(batch.tokens, layer)?;
            let scores = ScoreMods { bias: bias.as_deref(), key_mask: None };
            let (y, tape) = block.forward_taped(b, weights, geometry, input, batch.steps, batch.tokens, scores)?;
            tapes.push(tape);
            states = Some(y);
        }
        let output = states.ok_or_else(|| Error::Internal("a reverse pass through no layers".into()))?;
        // Through Dense modules after pooling, unit cotangents become dense ones.
        let heads = self.heads();
        let through_heads;
        let seeds = match (heads.any_dense(), seeds) {
            // Units within a truncation are units of the whole vector.
            (false, PooledSeeds::Units(dims)) => PooledSeeds::Units(dims),
            (false, PooledSeeds::Dense(seeds)) if heads.truncation().is_none() => PooledSeeds::Dense(seeds),
            (_, seeds) => {
                let tape = self.head_tape(batch.steps, || self.pool(pool, &output, batch.steps, batch.tokens))?;
                let units;
                let top = match seeds {
                    PooledSeeds::Dense(seeds) => seeds,
                    PooledSeeds::Units(dims) => {
                        let d = self.embedding_dim();
                        let len = batch.tangent_seqs() * d;
                        units = b.upload(&unit_rows(batch.steps, dims, d), Role::Activations { len })?;
                        &units
                    }
                };
                through_heads = heads.vjp(b, &tape, top, batch.tangents, h)?;
                PooledSeeds::Dense(&through_heads)
            }
        };
        // Mean pooling's unit cotangents enter the last layer in structured form; any other
        // seeds, or poolings, are put on the output rows first.
        let mut above = match seeds {
            PooledSeeds::Units(dims) if pool.is_full_mean() => Above::PooledMeanUnits(dims),
            PooledSeeds::Units(dims) => {
                let len = batch.tangent_seqs() * h;
                let seeds = b.upload(&unit_rows(batch.steps, dims, h), Role::Activations { len })?;
                Above::Dense(pool_vjp(b, pool, &output, &seeds, batch, h)?)
            }
            PooledSeeds::Dense(seeds) => Above::Dense(pool_vjp(b, pool, &output, seeds, batch, h)?),
        };
        drop(output);
        for (layer, tape) in layers.zip(&tapes).rev() {
            let entering = match &above {
                Above::Dense(dense) => CotangentsIn::Dense(dense),
                Above::PooledMeanUnits(dims) => CotangentsIn::PooledMeanUnits(dims.clone()),
            };
            let form = if layer == from { input } else { InputForm::Full };
            let (block, weights, geometry) = self.layer(layer);
            let cotangents = block.vjp(b, weights, geometry, tape, entering, batch, form)?;
            after_layer()?;
            above = match cotangents {
                InputCotangents::Full(full) => Above::Dense(full),
                split @ InputCotangents::Split(_) => return Ok(split),
            };
        }
        match above {
            Above::Dense(full) => Ok(InputCotangents::Full(full)),
            Above::PooledMeanUnits(_) => Err(Error::Internal("a reverse pass through no layers".into())),
        }
    }

    /// The attributed embeddings `[seqs, D]` of states `x` at the input of layer `from`
    /// (`[seqs, tokens, hidden]`), through the rest of the stack, pooling and the heads.
    pub fn pooled_from(&self, x: B::Tensor, from: usize, seqs: usize, tokens: usize, pool: Pool) -> Result<Vec<f64>> {
        let output = self.forward_layers(x, from, self.num_layers(), seqs, tokens)?;
        self.backend.download(&self.embeddings_of(&output, seqs, tokens, pool)?)
    }

    /// The path `h_r + α Δ` probed at `alphas`, through layers `from..`, pooling and the heads:
    /// the attributed embeddings `e(α)` and their derivatives along the path `de/dα = ∂e/∂h · Δ`, each
    /// `[alphas, D]`. One tangent per node (the whole `Δ`) where an attribution step takes one
    /// per token: what the adaptive quadrature rule probes the path with.
    pub fn pooled_path_jvp(
        &self,
        origin: &B::Tensor,
        delta: &B::Tensor,
        alphas: &[f64],
        from: usize,
        tokens: usize,
        pool: Pool,
    ) -> Result<(Vec<f64>, Vec<f64>)> {
        let (b, h) = (self.backend, self.hidden());
        let x = b.interpolate(origin, delta, alphas)?;
        // All of `Δ` as the one tangent of every node: one "token" `tokens · hidden` wide.
        let dx = b.token_tangents(delta, alphas.len(), 1, tokens * h, 0..1)?;
        let batch = Batch { steps: alphas.len(), tangents: 1, tokens };
        let (y, dy) = self.jvp_layers(&x, &dx, from, batch, &|| Ok(()))?;
        let slopes = pool_jvp(b, pool, &y, &dy, batch, h)?;
        let (embeddings, tape) = self.head_forward(self.pool(pool, &y, alphas.len(), tokens)?, alphas.len())?;
        let slopes = self.heads().jvp(b, &tape, slopes, 1)?;
        Ok((b.download(&embeddings)?, b.download(&slopes)?))
    }

    /// `Δ Wqkvᵀ` of layer `layer` for `tokens` rows of `delta`: what the split cotangents'
    /// `q̄k̄v̄` are contracted with (`SplitCotangents`).
    pub fn qkv_projection(&self, delta: &B::Tensor, layer: usize, tokens: usize) -> Result<B::Tensor> {
        self.check_layer(layer)?;
        let block = &self.blocks[layer];
        let projection = block.input_projection().ok_or_else(|| {
            Error::Internal(format!("block `{}` has no attention projection of its input", block.name()))
        })?;
        self.backend.matmul(delta, tokens, self.params.layers[layer].linear(projection))
    }

    /// Input of layer `layer` (the embedding output for 0) for `seqs` sequences.
    pub fn states_at(&self, ids: &[u32], seqs: usize, layer: usize) -> Result<B::Tensor> {
        let tokens = ids.len() / seqs.max(1);
        self.forward_layers(self.embed_tokens(ids, seqs)?, 0, layer, seqs, tokens)
    }

    /// Pooled embeddings (unnormalized) of id sequences of any lengths, packed into one
    /// batch without padding: every op but attention is row-wise, so the texts' rows run end to
    /// end through the GEMMs and norms, and only attention sees them as `[seqs, longest]`,
    /// gathered into that layout with the padding masked out of the keys (padded query rows
    /// are computed and dropped). Each result is that of the text alone.
    fn pooled_packed(&self, texts: &[(&[u32], Pool)]) -> Result<Vec<Vec<f64>>> {
        let (h, b) = (self.hidden(), self.backend);
        let packing = Packing::new(b, &texts.iter().map(|(ids, _)| ids.len()).collect::<Vec<_>>())?;
        self.check_tokens(packing.tokens)?;
        let ids: Vec<u32> = texts.iter().flat_map(|(ids, _)| ids.iter().copied()).collect();
        let positions: Vec<u32> = texts.iter().flat_map(|(ids, _)| self.positions.for_ids(ids)).collect();
        // Padding sits after each text, so a text's relative positions, rotations and masks
        // are those it has alone.
        let width = self.shape().heads.width();
        let mut x = self.embed_rows(&ids, &positions)?;
        for layer in 0..self.num_layers() {
            let (block, weights, geometry) = self.layer(layer);
            let bias = self.score_bias(packing.tokens, layer)?;
            let scores = packing.scores(bias.as_deref());
            let attend = |qkv: &B::Tensor| -> Result<B::Tensor> {
                let padded = packing.to_padded(b, qkv, 3 * width)?;
                let (ctx, _) = geometry.attention(b, &padded, packing.seqs, packing.tokens, scores)?;
                packing.to_packed(b, &ctx, width)
            };
            x = block.forward_rows(b, weights, geometry, &x, ids.len(), attend)?;
        }
        let states = b.download(&x)?;
        let pooled = (packing.lengths.iter().zip(&packing.starts).zip(texts))
            .map(|((&len, &start), &(_, pool))| pool_host(pool, &states[start * h..(start + len) * h], h))
            .collect::<Result<Vec<_>>>()?;
        if !self.heads().any_dense() {
            return Ok(pooled);
        }
        let rows = b.upload_f64(&pooled.concat(), Some(&x))?;
        let embeddings = self.untruncated_embeddings(rows, pooled.len())?;
        let width = self.heads().untruncated().output_width(h);
        Ok(embeddings.chunks_exact(width).map(<[f64]>::to_vec).collect())
    }

    /// The embeddings of `rows` pooled vectors through the Dense modules, not truncated
    /// (`embed` truncates after Normalize, as sentence-transformers does), on the host.
    fn untruncated_embeddings(&self, pooled: B::Tensor, rows: usize) -> Result<Vec<f64>> {
        self.backend.download(&self.heads().untruncated().forward(self.backend, pooled, rows)?.0)
    }

    /// `pooled_packed`, with an exact model's reference embeddings subtracted: one reference
    /// per distinct length and pooling, packed into the same pass (`ShiftedBatch`).
    pub fn embed_packed(&self, texts: &[(&[u32], Pool)]) -> Result<Vec<Vec<f64>>> {
        match self.shifted_reference {
            None => self.pooled_packed(texts),
            Some(framing) => {
                let shifted = ShiftedBatch::keyed(texts, framing);
                Ok(shifted.embeddings(&self.pooled_packed(&shifted.keyed_sequences())?))
            }
        }
    }

    /// Sentence embeddings (unnormalized, through the Dense modules after pooling, not
    /// truncated: sentence-transformers truncates after Normalize), one row per sequence; an
    /// exact model's with its reference's subtracted.
    pub fn embed(&self, ids: &[u32], seqs: usize, pool: Pool) -> Result<Vec<f64>> {
        let tokens = ids.len() / seqs.max(1);
        let full =
            |states: &B::Tensor, seqs: usize| self.untruncated_embeddings(self.pool(pool, states, seqs, tokens)?, seqs);
        let states = self.states_at(ids, seqs, self.num_layers())?;
        let mut pooled = full(&states, seqs)?;
        if let Some(framing) = self.shifted_reference {
            let states = self.states_at(&framing.ids(tokens), 1, self.num_layers())?;
            let reference = full(&states, 1)?;
            pooled.iter_mut().enumerate().for_each(|(n, v)| *v -= reference[n % reference.len()]);
        }
        Ok(pooled)
    }

    /// Whether this is an exact model (its reference's output states subtracted before pooling).
    pub fn shifts_reference(&self) -> bool {
        self.shifted_reference.is_some()
    }

    /// The output token states `[tokens, hidden]` of one sequence as the pooling sees them: an
    /// exact model's minus its reference's.
    pub fn output_states(&self, ids: &[u32]) -> Result<Vec<f64>> {
        if self.heads().any_dense() || self.truncation().is_some() {
            // What reads them (the decomposition baseline) takes them for the embedding's terms.
            return Err(Error::argument(
                "--method",
                "with Dense modules after pooling, or --truncate-dim, the embedding is not the sum over token states the decomposition splits",
            ));
        }
        let mut states = self.backend.download(&self.states_at(ids, 1, self.num_layers())?)?;
        if let Some(framing) = self.shifted_reference {
            let reference = self.backend.download(&self.states_at(&framing.ids(ids.len()), 1, self.num_layers())?)?;
            states.iter_mut().zip(&reference).for_each(|(s, r)| *s -= r);
        }
        Ok(states)
    }
}
