//! The gradient of a loss with respect to every trainable tensor, on the host in f64, laid out
//! like the tensors themselves and ordered as `EncoderParams::slots` lists them.

use std::collections::HashMap;

use crate::error::{Error, Result};
use crate::params::{EncoderParams, HostTensor, Slot};

pub struct Gradients {
    slots: Vec<Slot>,
    index: HashMap<Slot, usize>,
    values: Vec<Vec<f64>>,
}

impl Gradients {
    /// Zeros shaped like `params`.
    pub fn zeros(params: &EncoderParams<HostTensor>) -> Self {
        let slots = params.slots();
        let values = slots.iter().map(|&s| vec![0.0; params.get(s).map_or(0, |t| t.data().len())]).collect();
        let index = slots.iter().enumerate().map(|(n, &s)| (s, n)).collect();
        Gradients { slots, index, values }
    }

    pub fn slots(&self) -> &[Slot] {
        &self.slots
    }

    pub fn get(&self, slot: Slot) -> Option<&[f64]> {
        self.index.get(&slot).map(|&n| self.values[n].as_slice())
    }

    fn slot_mut(&mut self, slot: Slot) -> Result<&mut Vec<f64>> {
        let n = *self.index.get(&slot).ok_or_else(|| Error::Internal(format!("no gradient for {slot:?}")))?;
        Ok(&mut self.values[n])
    }

    /// Adds `values` to the gradient of `slot` (the whole tensor).
    pub fn add(&mut self, slot: Slot, values: &[f64]) -> Result<()> {
        let grad = self.slot_mut(slot)?;
        if grad.len() != values.len() {
            return Err(Error::Internal(format!("gradient of {slot:?}: {} values for {}", values.len(), grad.len())));
        }
        grad.iter_mut().zip(values).for_each(|(g, v)| *g += v);
        Ok(())
    }

    /// Adds `values` (`[width]`) to row `row` of a table's gradient.
    pub fn add_row(&mut self, slot: Slot, row: usize, width: usize, values: &[f64]) -> Result<()> {
        let grad = self.slot_mut(slot)?;
        let target = grad
            .get_mut(row * width..(row + 1) * width)
            .ok_or_else(|| Error::Internal(format!("row {row} is outside the table {slot:?}")))?;
        target.iter_mut().zip(values).for_each(|(g, v)| *g += v);
        Ok(())
    }

    /// `√(Σ g²)` over every tensor: what gradient clipping bounds.
    pub fn norm(&self) -> f64 {
        self.values.iter().flatten().map(|g| g * g).sum::<f64>().sqrt()
    }

    pub fn scale(&mut self, factor: f64) {
        self.values.iter_mut().flatten().for_each(|g| *g *= factor);
    }

    /// Each slot with its values.
    pub fn iter(&self) -> impl Iterator<Item = (Slot, &[f64])> {
        self.slots.iter().copied().zip(self.values.iter().map(Vec::as_slice))
    }
}
