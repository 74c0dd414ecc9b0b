//! Texts of different lengths in one batch without padding the row-wise work: every op but
//! attention is row-wise, so the texts' rows run end to end through the GEMMs and norms
//! (`[rows, width]`), and only attention sees them as `[seqs, T, width]` (T the longest),
//! gathered into that layout with the padding masked out of the keys. A pad slot repeats its
//! text's last row; as a key it is masked, as a query it is computed and dropped. Its
//! cotangents are exactly zero (nothing reads it), so going back to the packed rows is a gather
//! too.

use crate::backend::{Backend, Role, ScoreMods};
use crate::error::{Error, Result};

pub struct Packing<T> {
    pub seqs: usize,
    /// The longest text's tokens: the padded layout's `T`.
    pub tokens: usize,
    /// First packed row of each text.
    pub starts: Vec<usize>,
    pub lengths: Vec<usize>,
    /// The packed row each padded slot reads, `[seqs · T]`.
    padded_rows: Vec<u32>,
    /// The padded slot of each packed row, `[rows]`.
    packed_rows: Vec<u32>,
    /// `[seqs, T]`: 1 on a text's tokens, 0 on its padding.
    pub key_mask: T,
}

impl<T> Packing<T> {
    pub fn new<B: Backend<Tensor = T>>(backend: &B, lengths: &[usize]) -> Result<Self> {
        let seqs = lengths.len();
        let tokens = lengths.iter().copied().max().unwrap_or(0);
        if seqs == 0 || lengths.contains(&0) {
            return Err(Error::argument("texts", "every text needs at least one token"));
        }
        let starts: Vec<usize> =
            lengths.iter().scan(0, |start, &n| Some(std::mem::replace(start, *start + n))).collect();
        let mut padded_rows = Vec::with_capacity(seqs * tokens);
        let mut mask = vec![0.0f32; seqs * tokens];
        let mut packed_rows = Vec::with_capacity(lengths.iter().sum());
        for (s, (&len, &start)) in lengths.iter().zip(&starts).enumerate() {
            padded_rows.extend((0..tokens).map(|t| (start + t.min(len - 1)) as u32));
            mask[s * tokens..][..len].fill(1.0);
            packed_rows.extend((0..len).map(|t| (s * tokens + t) as u32));
        }
        let key_mask = backend.upload(&mask, Role::KeyMask { seqs, tokens })?;
        Ok(Packing { seqs, tokens, starts, lengths: lengths.to_vec(), padded_rows, packed_rows, key_mask })
    }

    /// Packed rows in all.
    pub fn rows(&self) -> usize {
        self.packed_rows.len()
    }

    /// The score modifiers of the padded layout: the key mask, and `bias` (made for `tokens`).
    pub fn scores<'a>(&'a self, bias: Option<&'a T>) -> ScoreMods<'a, T> {
        ScoreMods { bias, key_mask: Some(&self.key_mask) }
    }

    /// `[rows, width]` → `[seqs, T, width]`.
    pub fn to_padded<B: Backend<Tensor = T>>(&self, backend: &B, packed: &T, width: usize) -> Result<T> {
        backend.gather_rows(packed, width, &self.padded_rows)
    }

    /// `[seqs, T, width]` → `[rows, width]` (the pad slots dropped).
    pub fn to_packed<B: Backend<Tensor = T>>(&self, backend: &B, padded: &T, width: usize) -> Result<T> {
        backend.gather_rows(padded, width, &self.packed_rows)
    }

    /// The adjoint of `to_packed`: cotangents of the packed rows into the padded layout, zero
    /// on the pad slots.
    pub fn to_padded_cotangents<B: Backend<Tensor = T>>(&self, backend: &B, packed: &T, width: usize) -> Result<T> {
        backend.scatter_rows(packed, width, &self.packed_rows, self.seqs * self.tokens)
    }
}
