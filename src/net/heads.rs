//! What runs after pooling, as sentence-transformers lists it in `modules.json`: Dense modules,
//! `y = act(x Wᵀ + b)`, and Normalize. A family's network ends in this list (`Network::heads`);
//! their weights are `EncoderParams::heads`, one `Linear` per Dense, in order.
//!
//! The attributed embedding is the last Dense module's output (the pooled vector where there is
//! none). Normalize is what `embed` applies, as `encode` does; attribution differentiates it
//! only under cos-exact (`attribution::normalization`), as xsbert attributes the unnormalized
//! vector.
//!
//! Heads run on pooled rows, one per step (the primal) or per step and tangent (the JVP and
//! VJP): `T` times fewer rows than a layer. Their GEMMs run on the backend. A nonlinear
//! activation's elementwise part runs on the host in f64, a download and an upload of those few
//! rows, which costs nothing beside a layer and needs no kernel.

use crate::backend::Backend;
use crate::error::{Error, Result};
pub use crate::params::DenseActivation;
use crate::params::Linear;

/// One module after pooling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Head {
    /// The next Dense module's weights, then `activation`.
    Dense { activation: DenseActivation },
    /// `e / max(|e|, 1e-12)`: applied by `embed`, not attributed. Only ever last.
    Normalize,
    /// Matryoshka truncation (`--truncate-dim`): the first `dims` values. After the Dense
    /// modules; attribution explains the truncated embedding. sentence-transformers
    /// truncates after Normalize, which `embed` follows (`Encoder::embed` leaves it out).
    Truncate { dims: usize },
}

/// The heads of one network with their weights on a backend.
pub struct Heads<'p, T> {
    heads: &'p [Head],
    dense: &'p [Linear<T>],
}

/// What the heads' derivatives read of their primal pass over `rows` rows: each Dense module's
/// pre-activations `[rows, out]`, on the host, where its activation is not the identity.
pub struct HeadsTape {
    rows: usize,
    pre_activations: Vec<Option<Vec<f64>>>,
}

impl<'p, T> Heads<'p, T> {
    /// `heads` with the Dense weights `dense`, one per Dense module in order (`check` says
    /// whether they fit).
    pub fn new(heads: &'p [Head], dense: &'p [Linear<T>]) -> Self {
        Heads { heads, dense }
    }

    /// Fails unless the modules and their weights fit each other: one weight per Dense module,
    /// each reading the width the one before it writes (`hidden` for the first), and
    /// Normalize only last.
    pub fn check(&self, hidden: usize) -> Result<()> {
        let (heads, dense) = (self.heads, self.dense);
        let count = heads.iter().filter(|h| matches!(h, Head::Dense { .. })).count();
        if count != dense.len() {
            return Err(Error::Internal(format!(
                "the network has {count} Dense modules after pooling, the weights {}",
                dense.len()
            )));
        }
        if let Some(n) = heads.iter().position(|h| *h == Head::Normalize) {
            if n + 1 != heads.len() {
                return Err(Error::Internal("Normalize is followed by another module after pooling".into()));
            }
        }
        if let Some(n) = heads.iter().position(|h| matches!(h, Head::Truncate { .. })) {
            if heads[n + 1..].iter().any(|h| *h != Head::Normalize) {
                return Err(Error::Internal("a Dense module after the truncation".into()));
            }
        }
        let mut width = hidden;
        for (n, layer) in dense.iter().enumerate() {
            if layer.in_dim != width {
                return Err(Error::Internal(format!(
                    "Dense module {n} after pooling reads width {}, its input is {width} wide",
                    layer.in_dim
                )));
            }
            width = layer.out_dim;
        }
        if let Some(dims) = self.truncation() {
            if dims == 0 || dims > width {
                return Err(Error::argument(
                    "--truncate-dim",
                    format!("{dims} is not between 1 and the embedding's {width} dimensions"),
                ));
            }
        }
        Ok(())
    }

    /// The Matryoshka truncation, if any: the attributed embedding's first `dims` values.
    pub fn truncation(&self) -> Option<usize> {
        self.heads.iter().find_map(|h| match *h {
            Head::Truncate { dims } => Some(dims),
            _ => None,
        })
    }

    /// These heads without the truncation (what `embed` runs, truncating after Normalize).
    pub fn untruncated(&self) -> Heads<'p, T> {
        let end = self.heads.iter().position(|h| matches!(h, Head::Truncate { .. })).unwrap_or(self.heads.len());
        Heads { heads: &self.heads[..end], dense: self.dense }
    }

    /// The Dense modules in order, each with its weights.
    fn dense(&self) -> Vec<(DenseActivation, &'p Linear<T>)> {
        let activations = self.heads.iter().filter_map(|h| match *h {
            Head::Dense { activation } => Some(activation),
            Head::Normalize | Head::Truncate { .. } => None,
        });
        activations.zip(self.dense).collect()
    }

    /// Whether there is a Dense module: else the attributed embedding is the pooled vector and
    /// every pass leaves it as it is.
    pub fn any_dense(&self) -> bool {
        !self.dense.is_empty()
    }

    /// Whether the last module is Normalize.
    pub fn normalizes(&self) -> bool {
        self.heads.last() == Some(&Head::Normalize)
    }

    /// Whether the derivatives read the primal pass (some activation is not the identity).
    pub fn needs_primal(&self) -> bool {
        self.dense().into_iter().any(|(activation, _)| activation != DenseActivation::Identity)
    }

    /// The tape of a pass over `rows` rows whose derivatives read no primal (every activation
    /// the identity, `needs_primal` false), made without running the heads.
    pub fn tape_without_primal(&self, rows: usize) -> HeadsTape {
        HeadsTape { rows, pre_activations: self.dense.iter().map(|_| None).collect() }
    }

    /// The width of the attributed embedding: the truncation, or the last Dense module's
    /// output, or `hidden`.
    pub fn output_width(&self, hidden: usize) -> usize {
        let full = self.full_width(hidden);
        self.truncation().map_or(full, |dims| dims.min(full))
    }

    /// The width before any truncation.
    fn full_width(&self, hidden: usize) -> usize {
        self.dense.last().map_or(hidden, |layer| layer.out_dim)
    }
}

impl<'p, T> Heads<'p, T> {
    /// The Dense modules on `x` (`[rows, hidden]`, pooled): the attributed embeddings
    /// `[rows, out]`, and what the derivatives read.
    pub fn forward<B: Backend<Tensor = T>>(&self, backend: &B, x: T, rows: usize) -> Result<(T, HeadsTape)> {
        let mut tape = HeadsTape { rows, pre_activations: Vec::new() };
        let mut x = x;
        for (activation, layer) in self.dense() {
            let z = backend.linear(&x, rows, layer)?;
            if activation == DenseActivation::Identity {
                tape.pre_activations.push(None);
                x = z;
                continue;
            }
            let z = backend.download(&z)?;
            let y: Vec<f64> = z.iter().map(|&v| activation.value(v)).collect();
            x = backend.upload_f64(&y, Some(&x))?;
            tape.pre_activations.push(Some(z));
        }
        Ok((self.truncate(backend, x, rows)?, tape))
    }

    /// The first `dims` columns of the `rows` rows of `x` (the last Dense module's output, or
    /// the pooled vectors) where there is a truncation: rows are few, so on the host.
    fn truncate<B: Backend<Tensor = T>>(&self, backend: &B, x: T, rows: usize) -> Result<T> {
        let Some(dims) = self.truncation() else { return Ok(x) };
        let values = backend.download(&x)?;
        let width = self.full_width(values.len() / rows.max(1));
        if width == dims {
            return Ok(x);
        }
        let kept: Vec<f64> = values.chunks_exact(width).flat_map(|row| row[..dims].iter().copied()).collect();
        backend.upload_f64(&kept, Some(&x))
    }

    /// `dy`'s rows (`dims` wide) put back at the front of `width`-wide zero rows: the
    /// truncation's adjoint.
    fn untruncate<B: Backend<Tensor = T>>(&self, backend: &B, dy: &T, width: usize) -> Result<Option<T>> {
        let Some(dims) = self.truncation().filter(|&dims| dims < width) else { return Ok(None) };
        let values = backend.download(dy)?;
        let mut padded = vec![0.0f64; values.len() / dims * width];
        for (out, row) in padded.chunks_exact_mut(width).zip(values.chunks_exact(dims)) {
            out[..dims].copy_from_slice(row);
        }
        Ok(Some(backend.upload_f64(&padded, Some(dy))?))
    }

    /// The tangents of the attributed embeddings from the pooled tangents `dx`
    /// (`[rows · per_row, hidden]`, `per_row` consecutive tangent rows at each primal row of
    /// `tape`): `dx` itself where there is no Dense module.
    pub fn jvp<B: Backend<Tensor = T>>(&self, backend: &B, tape: &HeadsTape, dx: T, per_row: usize) -> Result<T> {
        let rows = tape.rows * per_row;
        let mut dx = dx;
        for ((activation, layer), z) in self.dense().into_iter().zip(tape.pre_activations(self)?) {
            dx = backend.matmul(&dx, rows, layer)?;
            if let Some(z) = z {
                dx = scale_by_derivative(backend, &dx, z, activation, layer.out_dim, per_row)?;
            }
        }
        self.truncate(backend, dx, rows)
    }

    /// The cotangents of the pooled vectors from those of the attributed embeddings, `dy`
    /// (`[rows · per_row, out]`, `per_row` consecutive cotangent rows at each primal row of
    /// `tape`). `hidden` is the pooled vectors' width.
    pub fn vjp<B: Backend<Tensor = T>>(
        &self,
        backend: &B,
        tape: &HeadsTape,
        dy: &T,
        per_row: usize,
        hidden: usize,
    ) -> Result<T> {
        let rows = tape.rows * per_row;
        let padded = self.untruncate(backend, dy, self.full_width(hidden))?;
        let dy = padded.as_ref().unwrap_or(dy);
        let mut out: Option<T> = None;
        let pre_activations = tape.pre_activations(self)?;
        for ((activation, layer), z) in self.dense().into_iter().rev().zip(pre_activations.into_iter().rev()) {
            let scaled = match z {
                Some(z) => Some(scale_by_derivative(
                    backend,
                    out.as_ref().unwrap_or(dy),
                    z,
                    activation,
                    layer.out_dim,
                    per_row,
                )?),
                None => None,
            };
            let above = scaled.as_ref().or(out.as_ref()).unwrap_or(dy);
            out = Some(backend.matmul_vjp(above, rows, layer)?);
        }
        match out {
            Some(out) => Ok(out),
            None => backend.upload_f64(&backend.download(dy)?, Some(dy)),
        }
    }
}

impl HeadsTape {
    /// The pre-activations of each Dense module of `heads`, checked to be this tape's.
    fn pre_activations<T>(&self, heads: &Heads<'_, T>) -> Result<Vec<Option<&[f64]>>> {
        if self.pre_activations.len() != heads.dense.len() {
            return Err(Error::Internal("a heads tape of other heads".into()));
        }
        Ok(self.pre_activations.iter().map(Option::as_deref).collect())
    }
}

/// `d ⊙ act'(z)`, each of `d`'s rows (`[rows · per_row, width]`) scaled by the derivative at its
/// primal row of `z` (`[rows, width]`).
fn scale_by_derivative<B: Backend>(
    backend: &B,
    d: &B::Tensor,
    z: &[f64],
    activation: DenseActivation,
    width: usize,
    per_row: usize,
) -> Result<B::Tensor> {
    let mut values = backend.download(d)?;
    if values.len() != z.len() * per_row {
        return Err(Error::Internal(format!(
            "{} derivative values at {} pre-activations, {per_row} each",
            values.len(),
            z.len()
        )));
    }
    for (n, row) in values.chunks_exact_mut(width).enumerate() {
        let primal = &z[(n / per_row) * width..][..width];
        row.iter_mut().zip(primal).for_each(|(v, &z)| *v *= activation.derivative(z));
    }
    backend.upload_f64(&values, None)
}
