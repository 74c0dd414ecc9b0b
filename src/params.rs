//! The ground floor: the encoder's parameter tree and what each tensor in it is for. It
//! imports nothing of the crate, so the loader (`model`), the backends and the network
//! description (`net`) can all build on it without arrows pointing up the stack.
//!
//! The tree is generic over where the tensors live: `HostTensor` after loading, a backend's
//! device buffer after upload. One structure, so the loader and every backend agree on what a
//! layer holds.

use crate::error::Error;
use std::collections::HashSet;
use std::ops::Range;
use std::sync::Arc;

/// A dense f32 tensor on the host, as loaded from a checkpoint: its own values, or f32 values
/// read in place from the memory-mapped checkpoint, so that loading copies nothing a backend
/// copies again at upload (MPNet's 438 MB would otherwise be copied twice and page-faulted in
/// twice before the first token is processed).
#[derive(Clone)]
pub struct HostTensor {
    pub shape: Vec<usize>,
    values: Values,
}

#[derive(Clone)]
enum Values {
    Owned(Vec<f32>),
    /// `len` f32 values at byte `offset` of a read-only file map, checked aligned when made.
    Mapped {
        file: Arc<dyn AsRef<[u8]> + Send + Sync>,
        offset: usize,
        len: usize,
    },
}

impl HostTensor {
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Self {
        HostTensor { shape, values: Values::Owned(data) }
    }

    /// The little-endian f32 values at `bytes` of `file` (a range of it), in place; `None`
    /// when they are not 4-byte aligned there or this machine is big-endian.
    pub fn mapped(
        shape: Vec<usize>,
        file: Arc<dyn AsRef<[u8]> + Send + Sync>,
        bytes: std::ops::Range<usize>,
    ) -> Option<Self> {
        let slice = (*file).as_ref().get(bytes.clone())?;
        let aligned = cfg!(target_endian = "little") && bytemuck::try_cast_slice::<u8, f32>(slice).is_ok();
        aligned
            .then(|| HostTensor { shape, values: Values::Mapped { file, offset: bytes.start, len: bytes.len() / 4 } })
    }

    /// Whether the values are read in place from a mapped file (sharing them costs nothing).
    pub fn is_mapped(&self) -> bool {
        matches!(self.values, Values::Mapped { .. })
    }

    pub fn data(&self) -> &[f32] {
        match &self.values {
            Values::Owned(data) => data,
            Values::Mapped { file, offset, len } => {
                bytemuck::cast_slice(&(**file).as_ref()[*offset..*offset + 4 * len])
            }
        }
    }
}

impl PartialEq for HostTensor {
    fn eq(&self, other: &Self) -> bool {
        self.shape == other.shape && self.data() == other.data()
    }
}

impl std::fmt::Debug for HostTensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = if matches!(self.values, Values::Owned(_)) { "owned" } else { "mapped" };
        write!(f, "HostTensor({:?}, {kind})", self.shape)
    }
}

/// What an uploaded tensor is for, with its shape, so that a backend can store it the way its
/// ops read it (a GEMM-friendly weight layout, a lower storage precision) without the network
/// description knowing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Activations, tangents and other row-major data that ops read as laid out.
    Activations { len: usize },
    /// `W` of a dense layer, `[out, in]` row-major as PyTorch stores it.
    Weight { out_dim: usize, in_dim: usize },
    /// A bias, LayerNorm `γ` or `β`: one value per feature.
    Vector { len: usize },
    /// An embedding table `[rows, width]` read by `gather_rows`.
    Table { rows: usize, width: usize },
    /// An additive attention-score bias `[heads, tokens, tokens]`, shared by every sequence.
    ScoreBias { heads: usize, tokens: usize },
    /// A key mask `[seqs, tokens]`: 1 where a key may be attended to, 0 where it is padding.
    KeyMask { seqs: usize, tokens: usize },
    /// A norm's scale stored as `w` and applied as `1 + w` (Gemma's RMSNorm): the uploader
    /// adds the one in f64 (`net::encoder::upload_params`), so that an f64 backend holds
    /// `1 + w` exactly.
    UnitOffsetScale { len: usize },
}

impl Role {
    /// Number of scalars a tensor of this role holds.
    pub fn len(self) -> usize {
        match self {
            Role::Activations { len } | Role::Vector { len } | Role::UnitOffsetScale { len } => len,
            Role::Weight { out_dim, in_dim } => out_dim * in_dim,
            Role::Table { rows, width } => rows * width,
            Role::ScoreBias { heads, tokens } => heads * tokens * tokens,
            Role::KeyMask { seqs, tokens } => seqs * tokens,
        }
    }

    pub fn is_empty(self) -> bool {
        self.len() == 0
    }
}

/// A dense layer `y = x Wᵀ + b`, `W` stored `[out, in]` row-major on the host.
#[derive(Debug, Clone)]
pub struct Linear<T> {
    pub weight: T,
    pub bias: T,
    pub in_dim: usize,
    pub out_dim: usize,
}

/// A Dense module's activation (sentence-transformers' `activation_function`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenseActivation {
    /// `torch.nn.Identity`: the Dense modules of sentence-t5, gtr-t5 and EmbeddingGemma.
    Identity,
    /// `torch.nn.Tanh`, sentence-transformers' default (LaBSE's head).
    Tanh,
    /// `torch.nn.ReLU`.
    Relu,
    /// `torch.nn.GELU` with the exact `erf`.
    Gelu,
}

impl DenseActivation {
    pub fn value(self, x: f64) -> f64 {
        match self {
            DenseActivation::Identity => x,
            DenseActivation::Tanh => x.tanh(),
            DenseActivation::Relu => x.max(0.0),
            DenseActivation::Gelu => 0.5 * x * (1.0 + libm::erf(x / std::f64::consts::SQRT_2)),
        }
    }

    /// The derivative at `x` (ReLU's is taken as 0 at 0, as PyTorch's autograd does).
    pub fn derivative(self, x: f64) -> f64 {
        match self {
            DenseActivation::Identity => 1.0,
            DenseActivation::Tanh => 1.0 - x.tanh().powi(2),
            DenseActivation::Relu => f64::from(u8::from(x > 0.0)),
            DenseActivation::Gelu => {
                let cdf = 0.5 * (1.0 + libm::erf(x / std::f64::consts::SQRT_2));
                cdf + x * (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt()
            }
        }
    }
}

impl DenseActivation {
    /// The activation `activation_function` names in a Dense module's config (the class's
    /// full path, as sentence-transformers writes it).
    pub fn from_class(name: &str) -> Option<Self> {
        match name.rsplit('.').next()? {
            "Identity" => Some(DenseActivation::Identity),
            "Tanh" => Some(DenseActivation::Tanh),
            "ReLU" => Some(DenseActivation::Relu),
            "GELU" => Some(DenseActivation::Gelu),
            _ => None,
        }
    }
}

/// LayerNorm's scale `γ` and shift `β`.
#[derive(Debug, Clone)]
pub struct Norm<T> {
    pub gamma: T,
    pub beta: T,
}

/// The embedding tables and norm; which a family has, its description says
/// (`net::embeddings::Embeddings`).
#[derive(Debug, Clone)]
pub struct EmbeddingParams<T> {
    pub word: T,
    pub position: Option<T>,
    pub token_type: Option<T>,
    pub norm: Option<Norm<T>>,
}

/// One encoder layer's weights: the dense layers and norms every family has, and those only
/// some have (`None` elsewhere).
#[derive(Debug, Clone)]
pub struct LayerParams<T> {
    /// Query, key and value projections stacked into one `[3·width, hidden]` layer, so that
    /// every backend computes them with one GEMM; its output rows are `[q | k | v]`, each
    /// `heads × head_dim` wide (under grouped-query attention the loader repeats each key and
    /// value head for the query heads that read it).
    pub qkv: Linear<T>,
    pub attention_out: Linear<T>,
    /// The norm before (pre-norm families) or after (post-LN) attention. ModernBERT's first
    /// layer has none: its block does not read this one, which the loader fills as the
    /// identity's scale (ones).
    pub attention_norm: Norm<T>,
    pub ffn_in: Linear<T>,
    pub ffn_out: Linear<T>,
    pub ffn_norm: Norm<T>,
    /// QK-norm: RMSNorm of each head's queries and keys (Qwen3, Gemma3).
    pub head_norms: Option<HeadNorms<T>>,
    /// Gemma's norms of each sublayer's output, before its residual sum.
    pub post_attention_norm: Option<Norm<T>>,
    pub post_ffn_norm: Option<Norm<T>>,
}

/// QK-norm's scales: one for every head's queries, one for its keys, each `width` (the head
/// width) wide.
#[derive(Debug, Clone)]
pub struct HeadNorms<T> {
    pub query: Norm<T>,
    pub key: Norm<T>,
    pub width: usize,
}

/// How the norms' scales are stored: as applied, or as `w` applied as `1 + w` (Gemma).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScaleStorage {
    Direct,
    UnitOffset,
}

/// Which dense layer of a `LayerParams` a block description means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LinearId {
    Qkv,
    AttentionOut,
    FfnIn,
    FfnOut,
}

/// Which norm a block description means: one of the layer's, or the encoder's final norm (the
/// one after the last layer that pre-norm families have, which the last layer's block ends in).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NormId {
    Attention,
    Ffn,
    /// Gemma's norm of attention's output, before the residual sum.
    PostAttention,
    /// Gemma's norm of the feed-forward's output, before the residual sum.
    PostFfn,
    Final,
}

impl LinearId {
    /// The tensor `part` of this layer, as training's gradients name it.
    pub fn slot(self, part: LinearPart) -> LayerSlot {
        match self {
            LinearId::Qkv => LayerSlot::Qkv(part),
            LinearId::AttentionOut => LayerSlot::AttentionOut(part),
            LinearId::FfnIn => LayerSlot::FfnIn(part),
            LinearId::FfnOut => LayerSlot::FfnOut(part),
        }
    }
}

impl NormId {
    /// The tensor `part` of this norm, as training's gradients name it; `None` for the final
    /// norm, which is not a layer's.
    pub fn slot(self, part: NormPart) -> Option<LayerSlot> {
        match self {
            NormId::Attention => Some(LayerSlot::AttentionNorm(part)),
            NormId::Ffn => Some(LayerSlot::FfnNorm(part)),
            NormId::PostAttention => Some(LayerSlot::PostAttentionNorm(part)),
            NormId::PostFfn => Some(LayerSlot::PostFfnNorm(part)),
            NormId::Final => None,
        }
    }
}

impl<T> LayerParams<T> {
    pub fn linear(&self, id: LinearId) -> &Linear<T> {
        match id {
            LinearId::Qkv => &self.qkv,
            LinearId::AttentionOut => &self.attention_out,
            LinearId::FfnIn => &self.ffn_in,
            LinearId::FfnOut => &self.ffn_out,
        }
    }

    /// The layer's norm `id` (`None` for the final norm, which is the encoder's: `Weights`).
    pub fn norm(&self, id: NormId) -> Option<&Norm<T>> {
        match id {
            NormId::Attention => Some(&self.attention_norm),
            NormId::Ffn => Some(&self.ffn_norm),
            NormId::PostAttention => self.post_attention_norm.as_ref(),
            NormId::PostFfn => self.post_ffn_norm.as_ref(),
            NormId::Final => None,
        }
    }
}

/// The weights one block's walk reads: its layer's, and, for the last layer of a family with a
/// final norm, that norm (which the last layer's block ends in).
pub struct Weights<'p, T> {
    pub layer: &'p LayerParams<T>,
    pub final_norm: Option<&'p Norm<T>>,
}

impl<T> Clone for Weights<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Weights<'_, T> {}

impl<'p, T> From<&'p LayerParams<T>> for Weights<'p, T> {
    fn from(layer: &'p LayerParams<T>) -> Self {
        Weights { layer, final_norm: None }
    }
}

impl<'p, T> Weights<'p, T> {
    pub fn linear(&self, id: LinearId) -> &'p Linear<T> {
        self.layer.linear(id)
    }

    /// The norm `id`; an internal error where the block names a final norm the weights lack.
    pub fn norm(&self, id: NormId) -> crate::error::Result<&'p Norm<T>> {
        match id {
            NormId::Final => self.final_norm,
            id => self.layer.norm(id),
        }
        .ok_or_else(|| Error::Internal(format!("a block reads the norm {id:?}, which these weights do not have")))
    }

    pub fn hidden(&self) -> usize {
        self.layer.hidden()
    }

    /// QK-norm's scales; an internal error where the block reads them and the layer has none.
    pub fn head_norms(&self) -> crate::error::Result<&'p HeadNorms<T>> {
        (self.layer.head_norms.as_ref())
            .ok_or_else(|| Error::Internal("a block reads QK-norm scales these weights do not have".into()))
    }
}

#[derive(Debug, Clone)]
pub struct EncoderParams<T> {
    pub embeddings: EmbeddingParams<T>,
    pub layers: Vec<LayerParams<T>>,
    /// MPNet's relative position bias table `[buckets, heads]`. It stays on the host: the
    /// `[heads, T, T]` score bias made from it for each length is what a backend receives.
    pub relative_attention_bias: Option<HostTensor>,
    /// The norm after the last layer, in the families that have one (none of those loaded
    /// today: the tests give one to a pre-norm variant). Not trained: `TrainingNet` refuses it.
    pub final_norm: Option<Norm<T>>,
    /// The Dense modules after pooling (`net::heads`), in order.
    pub heads: Vec<Linear<T>>,
    /// How every norm's scale is stored (Gemma's as `w`, applied as `1 + w`).
    pub norm_scales: ScaleStorage,
    /// Grouped-query attention's key and value heads, repeated at load for the query heads
    /// that read them (`model::weights::repeat_heads`); training keeps the copies equal.
    pub repeated_heads: Option<RepeatedHeads>,
    /// The tensors the checkpoint does not hold, which the loader filled so that every layer
    /// has one shape (zero biases and shifts where a family has none, ModernBERT's missing
    /// first attention norm): neither trained nor exported.
    pub absent: HashSet<Slot>,
}

/// Grouped-query attention stored as multi-head attention: in the stacked `[q | k | v]`
/// projection, each of `kv_heads` key (and value) heads appears `group` times in a row, `dim`
/// rows each, so that query head `h` finds its key at index `h`. One parameter in the
/// checkpoint, `group` copies here: training sums their gradients into the first copy
/// (`fold`, so the gradient's norm counts it once) and copies the first back after each update
/// (`retie`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RepeatedHeads {
    pub kv_heads: usize,
    pub group: usize,
    pub dim: usize,
}

impl RepeatedHeads {
    /// For each key or value head of a `[q | k | v]` tensor whose rows are `row_len` values
    /// long: the first copy's value range, and each further copy's.
    fn copies(&self, row_len: usize) -> Vec<(Range<usize>, Vec<Range<usize>>)> {
        let (d, width) = (self.dim * row_len, self.kv_heads * self.group * self.dim * row_len);
        let part_starts = [width, 2 * width];
        let mut out = Vec::new();
        for start in part_starts {
            for g in 0..self.kv_heads {
                let copy = |c: usize| start + (g * self.group + c) * d..start + (g * self.group + c + 1) * d;
                out.push((copy(0), (1..self.group).map(copy).collect()));
            }
        }
        out
    }

    /// Sums each head's copies' gradients into its first copy and zeroes the rest.
    pub fn fold(&self, grad: &mut [f64], row_len: usize) {
        for (first, others) in self.copies(row_len) {
            for other in others {
                for (i, j) in first.clone().zip(other) {
                    grad[i] += grad[j];
                    grad[j] = 0.0;
                }
            }
        }
    }

    /// Copies each head's first copy over the others.
    pub fn retie<T: Copy>(&self, values: &mut [T], row_len: usize) {
        for (first, others) in self.copies(row_len) {
            for other in others {
                values.copy_within(first.clone(), other.start);
            }
        }
    }
}

/// Converts one tensor, told what it is for.
type MapFn<'f, T, U, E> = dyn FnMut(&T, Role) -> Result<U, E> + 'f;

impl<T> Linear<T> {
    pub fn try_map<U, E>(&self, f: &mut MapFn<'_, T, U, E>) -> Result<Linear<U>, E> {
        Ok(Linear {
            weight: f(&self.weight, Role::Weight { out_dim: self.out_dim, in_dim: self.in_dim })?,
            bias: f(&self.bias, Role::Vector { len: self.out_dim })?,
            in_dim: self.in_dim,
            out_dim: self.out_dim,
        })
    }
}

impl<T> Norm<T> {
    pub fn try_map<U, E>(&self, width: usize, f: &mut MapFn<'_, T, U, E>) -> Result<Norm<U>, E> {
        self.try_map_stored(width, ScaleStorage::Direct, f)
    }

    /// `try_map`, the scale told how it is stored.
    pub fn try_map_stored<U, E>(
        &self,
        width: usize,
        scales: ScaleStorage,
        f: &mut MapFn<'_, T, U, E>,
    ) -> Result<Norm<U>, E> {
        let scale = match scales {
            ScaleStorage::Direct => Role::Vector { len: width },
            ScaleStorage::UnitOffset => Role::UnitOffsetScale { len: width },
        };
        Ok(Norm { gamma: f(&self.gamma, scale)?, beta: f(&self.beta, Role::Vector { len: width })? })
    }
}

impl<T> LayerParams<T> {
    pub fn hidden(&self) -> usize {
        self.attention_out.out_dim
    }

    pub fn try_map<U, E>(&self, f: &mut MapFn<'_, T, U, E>) -> Result<LayerParams<U>, E> {
        self.try_map_stored(ScaleStorage::Direct, f)
    }

    /// `try_map`, the norms' scales told how they are stored.
    pub fn try_map_stored<U, E>(&self, scales: ScaleStorage, f: &mut MapFn<'_, T, U, E>) -> Result<LayerParams<U>, E> {
        let h = self.hidden();
        let mut norm = |n: &Norm<T>, width: usize| n.try_map_stored(width, scales, f);
        let attention_norm = norm(&self.attention_norm, h)?;
        let ffn_norm = norm(&self.ffn_norm, h)?;
        let post_attention_norm = self.post_attention_norm.as_ref().map(|n| norm(n, h)).transpose()?;
        let post_ffn_norm = self.post_ffn_norm.as_ref().map(|n| norm(n, h)).transpose()?;
        let head_norms = match &self.head_norms {
            Some(HeadNorms { query, key, width }) => {
                Some(HeadNorms { query: norm(query, *width)?, key: norm(key, *width)?, width: *width })
            }
            None => None,
        };
        Ok(LayerParams {
            qkv: self.qkv.try_map(f)?,
            attention_out: self.attention_out.try_map(f)?,
            attention_norm,
            ffn_in: self.ffn_in.try_map(f)?,
            ffn_out: self.ffn_out.try_map(f)?,
            ffn_norm,
            head_norms,
            post_attention_norm,
            post_ffn_norm,
        })
    }
}

impl EncoderParams<HostTensor> {
    /// Converts every tensor (e.g. uploads it to a device), keeping the structure; `f` is told
    /// each tensor's role.
    pub fn try_map<U, E>(&self, mut f: impl FnMut(&HostTensor, Role) -> Result<U, E>) -> Result<EncoderParams<U>, E> {
        let e = &self.embeddings;
        let width = e.word.shape.last().copied().unwrap_or(0);
        let mut table = |t: &HostTensor| f(t, Role::Table { rows: t.shape.first().copied().unwrap_or(0), width });
        let word = table(&e.word)?;
        let position = e.position.as_ref().map(&mut table).transpose()?;
        let token_type = e.token_type.as_ref().map(&mut table).transpose()?;
        let scales = self.norm_scales;
        let norm = e.norm.as_ref().map(|n| n.try_map_stored(width, scales, &mut f)).transpose()?;
        let layers = self.layers.iter().map(|l| l.try_map_stored(scales, &mut f)).collect::<Result<_, E>>()?;
        let final_norm = self.final_norm.as_ref().map(|n| n.try_map_stored(width, scales, &mut f)).transpose()?;
        let heads = self.heads.iter().map(|l| l.try_map(&mut f)).collect::<Result<_, E>>()?;
        Ok(EncoderParams {
            embeddings: EmbeddingParams { word, position, token_type, norm },
            layers,
            relative_attention_bias: self.relative_attention_bias.clone(),
            final_norm,
            heads,
            // `f` returns each `Role::UnitOffsetScale` tensor as applied, `1 + w`.
            norm_scales: ScaleStorage::Direct,
            repeated_heads: self.repeated_heads,
            absent: self.absent.clone(),
        })
    }
}

impl HostTensor {
    /// The values, writable: a tensor read in place from a file map is copied into memory
    /// first (training updates every parameter).
    pub fn data_mut(&mut self) -> &mut [f32] {
        if let Values::Mapped { .. } = self.values {
            self.values = Values::Owned(self.data().to_vec());
        }
        match &mut self.values {
            Values::Owned(data) => data,
            Values::Mapped { .. } => unreachable!("copied into memory above"),
        }
    }
}

/// `W` or `b` of a dense layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LinearPart {
    Weight,
    Bias,
}

/// `γ` or `β` of a LayerNorm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NormPart {
    Gamma,
    Beta,
}

/// A layer slot for a part of a dense layer, or of a norm.
pub type LinearSlot = fn(LinearPart) -> LayerSlot;
pub type NormSlot = fn(NormPart) -> LayerSlot;

/// One tensor of an encoder layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LayerSlot {
    Qkv(LinearPart),
    AttentionOut(LinearPart),
    AttentionNorm(NormPart),
    FfnIn(LinearPart),
    FfnOut(LinearPart),
    FfnNorm(NormPart),
    /// QK-norm's scale of the queries (Qwen3, Gemma3).
    QueryNorm(NormPart),
    /// QK-norm's scale of the keys.
    KeyNorm(NormPart),
    /// Gemma's norm of attention's output.
    PostAttentionNorm(NormPart),
    /// Gemma's norm of the feed-forward's output.
    PostFfnNorm(NormPart),
}

impl LayerSlot {
    /// The tensors every layer has (those only some families have follow them in
    /// `EncoderParams::slots`).
    pub const ALL: [LayerSlot; 12] = [
        LayerSlot::Qkv(LinearPart::Weight),
        LayerSlot::Qkv(LinearPart::Bias),
        LayerSlot::AttentionOut(LinearPart::Weight),
        LayerSlot::AttentionOut(LinearPart::Bias),
        LayerSlot::AttentionNorm(NormPart::Gamma),
        LayerSlot::AttentionNorm(NormPart::Beta),
        LayerSlot::FfnIn(LinearPart::Weight),
        LayerSlot::FfnIn(LinearPart::Bias),
        LayerSlot::FfnOut(LinearPart::Weight),
        LayerSlot::FfnOut(LinearPart::Bias),
        LayerSlot::FfnNorm(NormPart::Gamma),
        LayerSlot::FfnNorm(NormPart::Beta),
    ];
}

/// One trainable tensor of the encoder: where a gradient goes, and what an optimiser updates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Slot {
    WordEmbeddings,
    PositionEmbeddings,
    TokenTypeEmbeddings,
    EmbeddingNorm(NormPart),
    Layer(usize, LayerSlot),
    /// The norm after the last layer, in the families that have one.
    FinalNorm(NormPart),
    /// MPNet's relative position bias table.
    RelativeBias,
    /// The weight of Dense module `n` after pooling (an exact model's Dense modules are
    /// linear maps without bias: the weight is all there is to train).
    Dense(usize),
}

impl Slot {
    /// Whether AdamW decays this tensor: sentence-transformers' `fit` exempts every parameter
    /// whose name contains "bias" or "LayerNorm", which leaves the dense weights and the
    /// embedding tables (MPNet's `relative_attention_bias` is exempt by its name).
    pub fn decays(self) -> bool {
        match self {
            Slot::WordEmbeddings | Slot::PositionEmbeddings | Slot::TokenTypeEmbeddings | Slot::Dense(_) => true,
            Slot::Layer(_, LayerSlot::Qkv(part) | LayerSlot::AttentionOut(part)) => part == LinearPart::Weight,
            Slot::Layer(_, LayerSlot::FfnIn(part) | LayerSlot::FfnOut(part)) => part == LinearPart::Weight,
            Slot::EmbeddingNorm(_) | Slot::Layer(..) | Slot::FinalNorm(_) | Slot::RelativeBias => false,
        }
    }
}

impl<T> Linear<T> {
    fn part(&self, part: LinearPart) -> &T {
        match part {
            LinearPart::Weight => &self.weight,
            LinearPart::Bias => &self.bias,
        }
    }
    fn part_mut(&mut self, part: LinearPart) -> &mut T {
        match part {
            LinearPart::Weight => &mut self.weight,
            LinearPart::Bias => &mut self.bias,
        }
    }
}

impl<T> Norm<T> {
    fn part(&self, part: NormPart) -> &T {
        match part {
            NormPart::Gamma => &self.gamma,
            NormPart::Beta => &self.beta,
        }
    }
    fn part_mut(&mut self, part: NormPart) -> &mut T {
        match part {
            NormPart::Gamma => &mut self.gamma,
            NormPart::Beta => &mut self.beta,
        }
    }
}

impl<T> LayerParams<T> {
    /// The tensor in `slot`, where the layer has one (QK-norm and the sandwich norms only
    /// some families have).
    pub fn slot(&self, slot: LayerSlot) -> Option<&T> {
        Some(match slot {
            LayerSlot::Qkv(p) => self.qkv.part(p),
            LayerSlot::AttentionOut(p) => self.attention_out.part(p),
            LayerSlot::AttentionNorm(p) => self.attention_norm.part(p),
            LayerSlot::FfnIn(p) => self.ffn_in.part(p),
            LayerSlot::FfnOut(p) => self.ffn_out.part(p),
            LayerSlot::FfnNorm(p) => self.ffn_norm.part(p),
            LayerSlot::QueryNorm(p) => self.head_norms.as_ref()?.query.part(p),
            LayerSlot::KeyNorm(p) => self.head_norms.as_ref()?.key.part(p),
            LayerSlot::PostAttentionNorm(p) => self.post_attention_norm.as_ref()?.part(p),
            LayerSlot::PostFfnNorm(p) => self.post_ffn_norm.as_ref()?.part(p),
        })
    }
    pub fn slot_mut(&mut self, slot: LayerSlot) -> Option<&mut T> {
        Some(match slot {
            LayerSlot::Qkv(p) => self.qkv.part_mut(p),
            LayerSlot::AttentionOut(p) => self.attention_out.part_mut(p),
            LayerSlot::AttentionNorm(p) => self.attention_norm.part_mut(p),
            LayerSlot::FfnIn(p) => self.ffn_in.part_mut(p),
            LayerSlot::FfnOut(p) => self.ffn_out.part_mut(p),
            LayerSlot::FfnNorm(p) => self.ffn_norm.part_mut(p),
            LayerSlot::QueryNorm(p) => self.head_norms.as_mut()?.query.part_mut(p),
            LayerSlot::KeyNorm(p) => self.head_norms.as_mut()?.key.part_mut(p),
            LayerSlot::PostAttentionNorm(p) => self.post_attention_norm.as_mut()?.part_mut(p),
            LayerSlot::PostFfnNorm(p) => self.post_ffn_norm.as_mut()?.part_mut(p),
        })
    }

    /// The slots of this layer's tensors: every layer's, then QK-norm's scales and the
    /// sandwich norms where it has them.
    fn slots(&self) -> Vec<LayerSlot> {
        let mut slots = LayerSlot::ALL.to_vec();
        let optional: [(bool, NormSlot); 4] = [
            (self.head_norms.is_some(), LayerSlot::QueryNorm),
            (self.head_norms.is_some(), LayerSlot::KeyNorm),
            (self.post_attention_norm.is_some(), LayerSlot::PostAttentionNorm),
            (self.post_ffn_norm.is_some(), LayerSlot::PostFfnNorm),
        ];
        for (_, slot) in optional.into_iter().filter(|(present, _)| *present) {
            slots.extend([NormPart::Gamma, NormPart::Beta].map(slot));
        }
        slots
    }
}

impl<T> EncoderParams<T> {
    /// The tensor in `slot` as this tree holds it (`None` for MPNet's relative bias table,
    /// which stays a host tensor in every tree).
    pub fn uploaded_mut(&mut self, slot: Slot) -> Option<&mut T> {
        let e = &mut self.embeddings;
        match slot {
            Slot::WordEmbeddings => Some(&mut e.word),
            Slot::PositionEmbeddings => e.position.as_mut(),
            Slot::TokenTypeEmbeddings => e.token_type.as_mut(),
            Slot::EmbeddingNorm(p) => e.norm.as_mut().map(|n| n.part_mut(p)),
            Slot::Layer(l, s) => self.layers.get_mut(l).and_then(|layer| layer.slot_mut(s)),
            Slot::FinalNorm(p) => self.final_norm.as_mut().map(|n| n.part_mut(p)),
            Slot::RelativeBias => None,
            Slot::Dense(n) => self.heads.get_mut(n).map(|dense| &mut dense.weight),
        }
    }
}

impl EncoderParams<HostTensor> {
    /// Every trainable tensor, in a fixed order (embeddings, layers bottom up, the final norm,
    /// the relative bias): the order of gradients, optimiser state and checkpoints. The parts
    /// the checkpoint does not hold (`absent`) are not trained.
    pub fn slots(&self) -> Vec<Slot> {
        let e = &self.embeddings;
        let mut slots = vec![Slot::WordEmbeddings];
        if e.position.is_some() {
            slots.push(Slot::PositionEmbeddings);
        }
        if e.token_type.is_some() {
            slots.push(Slot::TokenTypeEmbeddings);
        }
        if e.norm.is_some() {
            slots.extend([Slot::EmbeddingNorm(NormPart::Gamma), Slot::EmbeddingNorm(NormPart::Beta)]);
        }
        for (l, layer) in self.layers.iter().enumerate() {
            slots.extend(layer.slots().into_iter().map(|s| Slot::Layer(l, s)));
        }
        if self.final_norm.is_some() {
            slots.extend([Slot::FinalNorm(NormPart::Gamma), Slot::FinalNorm(NormPart::Beta)]);
        }
        if self.relative_attention_bias.is_some() {
            slots.push(Slot::RelativeBias);
        }
        slots.extend((0..self.heads.len()).map(Slot::Dense));
        slots.retain(|slot| !self.absent.contains(slot));
        slots
    }

    /// The tensor in `slot`, if this encoder has one there.
    pub fn get(&self, slot: Slot) -> Option<&HostTensor> {
        let e = &self.embeddings;
        match slot {
            Slot::WordEmbeddings => Some(&e.word),
            Slot::PositionEmbeddings => e.position.as_ref(),
            Slot::TokenTypeEmbeddings => e.token_type.as_ref(),
            Slot::EmbeddingNorm(p) => e.norm.as_ref().map(|n| n.part(p)),
            Slot::Layer(l, s) => self.layers.get(l).and_then(|layer| layer.slot(s)),
            Slot::FinalNorm(p) => self.final_norm.as_ref().map(|n| n.part(p)),
            Slot::RelativeBias => self.relative_attention_bias.as_ref(),
            Slot::Dense(n) => self.heads.get(n).map(|dense| &dense.weight),
        }
    }

    /// Makes every repeated key and value head equal to its first copy again
    /// (`RepeatedHeads::retie`), after an update.
    pub fn retie_repeated_heads(&mut self) {
        let Some(repeated) = self.repeated_heads else { return };
        for layer in &mut self.layers {
            let in_dim = layer.qkv.in_dim;
            repeated.retie(layer.qkv.weight.data_mut(), in_dim);
            repeated.retie(layer.qkv.bias.data_mut(), 1);
        }
    }

    pub fn get_mut(&mut self, slot: Slot) -> Option<&mut HostTensor> {
        match slot {
            Slot::RelativeBias => self.relative_attention_bias.as_mut(),
            _ => self.uploaded_mut(slot),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_heads_fold_into_and_retie_from_the_first_copy() {
        // Two key/value heads of width 1, each read by two query heads: rows [q q q q | k0 k0
        // k1 k1 | v0 v0 v1 v1], each of two values.
        let repeated = RepeatedHeads { kv_heads: 2, group: 2, dim: 1 };
        let mut grad: Vec<f64> = (0..24).map(f64::from).collect();
        repeated.fold(&mut grad, 2);
        let queries: Vec<f64> = (0..8).map(f64::from).collect();
        assert_eq!(grad[..8], queries[..], "the queries are not repeated");
        assert_eq!(grad[8..16], [8. + 10., 9. + 11., 0., 0., 12. + 14., 13. + 15., 0., 0.]);
        assert_eq!(grad[16..], [16. + 18., 17. + 19., 0., 0., 20. + 22., 21. + 23., 0., 0.]);
        let mut values: Vec<f32> = (0..24).map(|v| v as f32).collect();
        repeated.retie(&mut values, 2);
        assert_eq!(values[8..16], [8., 9., 8., 9., 12., 13., 12., 13.]);
        assert_eq!(values[16..], [16., 17., 16., 17., 20., 21., 20., 21.]);
    }
}
