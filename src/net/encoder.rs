//! The whole encoder on one backend: embeddings, the layer stack split at any layer, and
//! mean pooling. Knows the architecture only through `Architecture` (position ids, token
//! types); everything else is the shared post-LN layer.

use std::ops::Range;

use crate::backend::{Backend, Batch, Heads, Role, ScoreMods};
use crate::error::{Error, Result};
use crate::model::{EncoderConfig, PositionIds, SentenceModel};
use crate::net::flops::{attribution_flops, AttributionFlops};
use crate::net::layer::{last_layer_pooled_jvp, layer_forward, layer_forward_rows, layer_jvp, LayerShape, TangentsIn};
use crate::params::EncoderParams;

pub struct Encoder<'b, B: Backend> {
    pub backend: &'b B,
    pub config: EncoderConfig,
    params: EncoderParams<B::Tensor>,
    positions: PositionIds,
}

impl<'b, B: Backend> Encoder<'b, B> {
    /// Uploads the model's weights to `backend`, each told its role.
    pub fn new(backend: &'b B, model: &SentenceModel) -> Result<Self> {
        let params = model.params.try_map(|t, role| backend.upload(&t.data, role))?;
        let config = model.config.clone();
        let positions = config.architecture.position_ids(config.pad_token_id);
        Ok(Encoder { backend, config, params, positions })
    }

    pub fn hidden(&self) -> usize {
        self.config.hidden_size
    }

    pub fn num_layers(&self) -> usize {
        self.config.num_layers
    }

    /// Scalars one tangent row needs at the peak of a layer's JVP (for the memory budget).
    pub fn tangent_row_scalars(&self) -> usize {
        self.shape().tangent_row_scalars()
    }

    /// Flops of attributing one text of `tokens` tokens at `layer` with `steps` steps.
    pub fn attribution_flops(&self, layer: usize, tokens: usize, steps: usize) -> AttributionFlops {
        attribution_flops(self.shape(), self.num_layers().saturating_sub(layer), tokens, steps)
    }

    pub fn shape(&self) -> LayerShape {
        LayerShape {
            hidden: self.config.hidden_size,
            ffn: self.config.intermediate_size,
            heads: Heads { count: self.config.num_heads, dim: self.config.head_dim() },
            eps: self.config.layer_norm_eps,
        }
    }

    /// Embedding output (after its LayerNorm) for `seqs` equal-length id sequences laid end
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
        let limit = self.config.max_position_embeddings;
        if tokens <= limit {
            return Ok(());
        }
        Err(Error::argument("text", format!("{tokens} tokens exceed max_position_embeddings {limit}")))
    }

    /// Embedding output (after its LayerNorm) of token rows with the given position ids.
    fn embed_rows(&self, ids: &[u32], positions: &[u32]) -> Result<B::Tensor> {
        let (b, h, e) = (self.backend, self.hidden(), &self.params.embeddings);
        let mut x = b.add(&b.gather_rows(&e.word, h, ids)?, &b.gather_rows(&e.position, h, positions)?)?;
        if let Some(types) = &e.token_type {
            // Single-text inputs: token type 0 everywhere.
            x = b.add(&x, &b.gather_rows(types, h, &vec![0; ids.len()])?)?;
        }
        let (y, _) = b.layer_norm(&x, ids.len(), h, &e.norm, self.config.layer_norm_eps)?;
        Ok(y)
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
        let mut x = x;
        for params in &self.params.layers[from..to] {
            x = layer_forward(self.backend, params, self.shape(), &x, seqs, tokens, ScoreMods::none())?;
        }
        Ok(x)
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
    /// the final `(states, tangents)`. `after_layer` is called as each layer finishes. The plain
    /// path: every tangent row through every GEMM.
    pub fn jvp_layers(
        &self,
        x: &B::Tensor,
        dx: &B::Tensor,
        from: usize,
        batch: Batch,
        after_layer: &dyn Fn(),
    ) -> Result<(B::Tensor, B::Tensor)> {
        self.check_layer(from)?;
        let (first, rest) = (&self.params.layers[from], &self.params.layers[from + 1..]);
        let (mut x, mut dx) =
            layer_jvp(self.backend, first, self.shape(), x, TangentsIn::Dense(dx), batch, ScoreMods::none())?;
        after_layer();
        for params in rest {
            (x, dx) =
                layer_jvp(self.backend, params, self.shape(), &x, TangentsIn::Dense(&dx), batch, ScoreMods::none())?;
            after_layer();
        }
        Ok((x, dx))
    }

    /// The attribution pass: runs layers `from..` on the primals `x` (`[steps, tokens, hidden]`)
    /// with the token-direction tangents `directions` of `delta` (`[tokens, hidden]`), and
    /// returns the mean-pooled output tangents, `[steps, directions, hidden]`. Equal to
    /// `jvp_layers` on `token_tangents(delta, …)` followed by mean pooling, but exploiting what
    /// a generic autodiff cannot see: the first layer's tangents are `T` distinct rows, and the
    /// last layer only needs their token mean.
    pub fn pooled_token_jvp(
        &self,
        x: &B::Tensor,
        delta: &B::Tensor,
        directions: Range<usize>,
        from: usize,
        batch: Batch,
        after_layer: &dyn Fn(),
    ) -> Result<B::Tensor> {
        self.check_layer(from)?;
        let last = self.num_layers() - 1;
        let (b, shape, scores) = (self.backend, self.shape(), ScoreMods::none());
        let (layers, first_in) = (&self.params.layers, TangentsIn::TokenDirections { delta, directions });
        if from == last {
            let pooled = last_layer_pooled_jvp(b, &layers[last], shape, x, first_in, batch, scores)?;
            after_layer();
            return Ok(pooled);
        }
        let (mut x, mut dx) = layer_jvp(b, &layers[from], shape, x, first_in, batch, scores)?;
        after_layer();
        for params in &layers[from + 1..last] {
            (x, dx) = layer_jvp(b, params, shape, &x, TangentsIn::Dense(&dx), batch, scores)?;
            after_layer();
        }
        let pooled = last_layer_pooled_jvp(b, &layers[last], shape, &x, TangentsIn::Dense(&dx), batch, scores)?;
        after_layer();
        Ok(pooled)
    }

    /// Input of layer `layer` (the embedding output for 0) for `seqs` sequences.
    pub fn states_at(&self, ids: &[u32], seqs: usize, layer: usize) -> Result<B::Tensor> {
        let tokens = ids.len() / seqs.max(1);
        self.forward_layers(self.embed_tokens(ids, seqs)?, 0, layer, seqs, tokens)
    }

    /// Mean-pooled embeddings (unnormalized) of id sequences of any lengths, packed into one
    /// batch without padding: every op but attention is row-wise, so the texts' rows run end to
    /// end through the GEMMs and norms, and only attention sees them as `[seqs, longest]`,
    /// gathered into that layout with the padding masked out of the keys (padded query rows
    /// are computed and dropped). Each result is that of the text alone.
    pub fn embed_packed(&self, texts: &[&[u32]]) -> Result<Vec<Vec<f64>>> {
        let (seqs, h, b) = (texts.len(), self.hidden(), self.backend);
        let tokens = texts.iter().map(|ids| ids.len()).max().unwrap_or(0);
        if seqs == 0 || tokens == 0 || texts.iter().any(|ids| ids.is_empty()) {
            return Err(Error::argument("texts", "every text needs at least one token"));
        }
        self.check_tokens(tokens)?;
        let starts: Vec<usize> =
            texts.iter().scan(0, |start, ids| Some(std::mem::replace(start, *start + ids.len()))).collect();
        let ids: Vec<u32> = texts.concat();
        let positions: Vec<u32> = texts.iter().flat_map(|ids| self.positions.for_ids(ids)).collect();
        // Row of the packed rows that each padded slot reads (a pad repeats its text's last
        // row; it is masked as a key and dropped as a query), and the padded slot of each row.
        let mut padded_rows = Vec::with_capacity(seqs * tokens);
        let mut mask = vec![0.0f32; seqs * tokens];
        let mut packed_rows = Vec::with_capacity(ids.len());
        for (s, (text, &start)) in texts.iter().zip(&starts).enumerate() {
            padded_rows.extend((0..tokens).map(|t| (start + t.min(text.len() - 1)) as u32));
            mask[s * tokens..][..text.len()].fill(1.0);
            packed_rows.extend((0..text.len()).map(|t| (s * tokens + t) as u32));
        }
        let key_mask = b.upload(&mask, Role::KeyMask { seqs, tokens })?;
        let scores = ScoreMods { bias: None, key_mask: Some(&key_mask) };
        let attend = |qkv: &B::Tensor| -> Result<B::Tensor> {
            let padded = b.gather_rows(qkv, 3 * h, &padded_rows)?;
            let (ctx, _) = b.attention(&padded, seqs, tokens, self.shape().heads, scores)?;
            b.gather_rows(&ctx, h, &packed_rows)
        };
        let mut x = self.embed_rows(&ids, &positions)?;
        for params in &self.params.layers {
            x = layer_forward_rows(b, params, self.shape(), &x, ids.len(), attend)?;
        }
        let states = b.download(&x)?;
        let pooled = texts.iter().zip(&starts).map(|(text, &start)| {
            let mut sum = vec![0.0f64; h];
            for row in states[start * h..(start + text.len()) * h].chunks_exact(h) {
                sum.iter_mut().zip(row).for_each(|(a, v)| *a += v);
            }
            sum.iter().map(|v| v / text.len() as f64).collect()
        });
        Ok(pooled.collect())
    }

    /// Mean-pooled sentence embeddings (unnormalized), one row per sequence.
    pub fn embed(&self, ids: &[u32], seqs: usize) -> Result<Vec<f64>> {
        let tokens = ids.len() / seqs.max(1);
        let states = self.states_at(ids, seqs, self.num_layers())?;
        self.backend.download(&self.backend.mean_pool(&states, seqs, tokens, self.hidden())?)
    }
}
