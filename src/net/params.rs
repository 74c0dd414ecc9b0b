//! The encoder's parameters, generic over where the tensors live: `HostTensor` after loading,
//! a backend's device buffer after `upload`. One structure, so the loader and every backend
//! agree on what a layer holds.

/// A dense layer `y = x Wᵀ + b`, `W` stored `[out, in]` row-major (PyTorch's layout).
#[derive(Debug, Clone)]
pub struct Linear<T> {
    pub weight: T,
    pub bias: T,
    pub in_dim: usize,
    pub out_dim: usize,
}

/// LayerNorm's scale `γ` and shift `β`.
#[derive(Debug, Clone)]
pub struct Norm<T> {
    pub gamma: T,
    pub beta: T,
}

#[derive(Debug, Clone)]
pub struct EmbeddingParams<T> {
    pub word: T,
    pub position: T,
    pub token_type: Option<T>,
    pub norm: Norm<T>,
}

/// One post-LN encoder layer (BERT, MPNet and RoBERTa share this shape).
#[derive(Debug, Clone)]
pub struct LayerParams<T> {
    pub query: Linear<T>,
    pub key: Linear<T>,
    pub value: Linear<T>,
    pub attention_out: Linear<T>,
    pub attention_norm: Norm<T>,
    pub ffn_in: Linear<T>,
    pub ffn_out: Linear<T>,
    pub ffn_norm: Norm<T>,
}

#[derive(Debug, Clone)]
pub struct EncoderParams<T> {
    pub embeddings: EmbeddingParams<T>,
    pub layers: Vec<LayerParams<T>>,
}

impl<T> Linear<T> {
    pub fn try_map<U, E>(&self, f: &mut impl FnMut(&T) -> Result<U, E>) -> Result<Linear<U>, E> {
        Ok(Linear { weight: f(&self.weight)?, bias: f(&self.bias)?, in_dim: self.in_dim, out_dim: self.out_dim })
    }
}

impl<T> Norm<T> {
    pub fn try_map<U, E>(&self, f: &mut impl FnMut(&T) -> Result<U, E>) -> Result<Norm<U>, E> {
        Ok(Norm { gamma: f(&self.gamma)?, beta: f(&self.beta)? })
    }
}

impl<T> LayerParams<T> {
    pub fn try_map<U, E>(&self, f: &mut impl FnMut(&T) -> Result<U, E>) -> Result<LayerParams<U>, E> {
        Ok(LayerParams {
            query: self.query.try_map(f)?,
            key: self.key.try_map(f)?,
            value: self.value.try_map(f)?,
            attention_out: self.attention_out.try_map(f)?,
            attention_norm: self.attention_norm.try_map(f)?,
            ffn_in: self.ffn_in.try_map(f)?,
            ffn_out: self.ffn_out.try_map(f)?,
            ffn_norm: self.ffn_norm.try_map(f)?,
        })
    }
}

impl<T> EncoderParams<T> {
    /// Converts every tensor (e.g. uploads it to a device), keeping the structure.
    pub fn try_map<U, E>(&self, mut f: impl FnMut(&T) -> Result<U, E>) -> Result<EncoderParams<U>, E> {
        let e = &self.embeddings;
        let embeddings = EmbeddingParams {
            word: f(&e.word)?,
            position: f(&e.position)?,
            token_type: e.token_type.as_ref().map(&mut f).transpose()?,
            norm: e.norm.try_map(&mut f)?,
        };
        let layers = self.layers.iter().map(|l| l.try_map(&mut f)).collect::<Result<_, E>>()?;
        Ok(EncoderParams { embeddings, layers })
    }
}
