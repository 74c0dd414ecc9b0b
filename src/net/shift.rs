//! The shifted reference of an exact model, for a batch of texts (embedding and training): every text's embedding is its pooled
//! output minus that of the reference input of its length (`[open] [pad]… [close]`), so that
//! `e(r) = 0`. The references run in the same packed pass as the texts, one per distinct
//! length; the gradient reaches a reference through every text of its length.

use crate::model::ReferenceFraming;

pub struct ShiftedBatch<K = ()> {
    /// The texts, then one reference per distinct length and key, each with its key.
    pub sequences: Vec<(Vec<u32>, K)>,
    texts: usize,
    /// The sequence of each text's reference.
    reference_of: Vec<usize>,
}

impl ShiftedBatch {
    pub fn new(texts: &[&[u32]], framing: ReferenceFraming) -> Self {
        let keyed: Vec<(&[u32], ())> = texts.iter().map(|&t| (t, ())).collect();
        ShiftedBatch::keyed(&keyed, framing)
    }
}

impl<K: Copy + Ord> ShiftedBatch<K> {
    /// Texts each with a key their reference shares (how the text is pooled: a reference
    /// leaves out what its text's pooling leaves out).
    pub fn keyed(texts: &[(&[u32], K)], framing: ReferenceFraming) -> Self {
        let mut sequences: Vec<(Vec<u32>, K)> = texts.iter().map(|&(t, k)| (t.to_vec(), k)).collect();
        let mut reference_of = Vec::with_capacity(texts.len());
        let mut by_length = std::collections::BTreeMap::new();
        for &(text, key) in texts {
            let at = *by_length.entry((text.len(), key)).or_insert_with(|| {
                sequences.push((framing.ids(text.len()), key));
                sequences.len() - 1
            });
            reference_of.push(at);
        }
        ShiftedBatch { sequences, texts: texts.len(), reference_of }
    }

    pub fn sequence_ids(&self) -> Vec<&[u32]> {
        self.sequences.iter().map(|(ids, _)| ids.as_slice()).collect()
    }

    /// Each sequence's ids with its key.
    pub fn keyed_sequences(&self) -> Vec<(&[u32], K)> {
        self.sequences.iter().map(|(ids, key)| (ids.as_slice(), *key)).collect()
    }

    /// Each text's embedding from every sequence's pooled vector.
    pub fn embeddings(&self, pooled: &[Vec<f64>]) -> Vec<Vec<f64>> {
        (0..self.texts)
            .map(|t| pooled[t].iter().zip(&pooled[self.reference_of[t]]).map(|(x, r)| x - r).collect())
            .collect()
    }

    /// The pooled vectors' cotangents from the texts' embedding cotangents: a text's own, and
    /// minus the sum over its length's texts for a reference.
    pub fn pooled_cotangents(&self, d_embeddings: &[Vec<f64>]) -> Vec<Vec<f64>> {
        let width = d_embeddings.first().map_or(0, Vec::len);
        let mut out = vec![vec![0.0; width]; self.sequences.len()];
        for (t, d) in d_embeddings.iter().enumerate() {
            out[t].iter_mut().zip(d).for_each(|(o, g)| *o += g);
            out[self.reference_of[t]].iter_mut().zip(d).for_each(|(o, g)| *o -= g);
        }
        out
    }
}
