//! AdamW with linear warm-up and linear decay, and gradient clipping by the global norm: what
//! sentence-transformers' `fit` runs (`torch.optim.AdamW`, `get_linear_schedule_with_warmup`,
//! `clip_grad_norm_`), step for step. The moments are f32 like the weights (PyTorch keeps them
//! in the parameters' dtype); each update is computed in f64 and rounded once.

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::net::backprop::Gradients;
use crate::params::{EncoderParams, HostTensor};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWConfig {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    /// Clip the gradient's global norm to this (`None`: no clipping).
    pub max_grad_norm: Option<f64>,
    pub warmup_steps: u64,
    pub total_steps: u64,
}

impl AdamWConfig {
    /// The learning rate of update `k` (0-based): `k / warmup` during the warm-up, then down
    /// linearly to 0 at `total_steps`; the first update of a warm-up has rate 0, as in PyTorch.
    pub fn lr_at(&self, k: u64) -> f64 {
        let factor = if k < self.warmup_steps {
            k as f64 / self.warmup_steps.max(1) as f64
        } else {
            (self.total_steps.saturating_sub(k)) as f64
                / (self.total_steps.saturating_sub(self.warmup_steps)).max(1) as f64
        };
        self.lr * factor.max(0.0)
    }
}

/// One chunk of a tensor's weights, gradient, first and second moments.
type Chunks<'a> = (((&'a mut [f32], &'a [f64]), &'a mut [f32]), &'a mut [f32]);

/// The optimiser's state: the moments of every trainable tensor (in `Gradients`' order) and the
/// number of updates taken.
pub struct AdamW {
    pub config: AdamWConfig,
    pub steps_taken: u64,
    pub first_moments: Vec<Vec<f32>>,
    pub second_moments: Vec<Vec<f32>>,
}

/// What one update did.
#[derive(Debug, Clone, Copy)]
pub struct UpdateStats {
    pub lr: f64,
    /// The gradient's global norm before clipping.
    pub grad_norm: f64,
}

impl AdamW {
    pub fn new(config: AdamWConfig, params: &EncoderParams<HostTensor>) -> Self {
        let zeros: Vec<Vec<f32>> =
            params.slots().iter().map(|&s| vec![0.0; params.get(s).map_or(0, |t| t.data().len())]).collect();
        AdamW { config, steps_taken: 0, first_moments: zeros.clone(), second_moments: zeros }
    }

    /// Clips `grads`, then updates `params` in place.
    pub fn update(&mut self, params: &mut EncoderParams<HostTensor>, grads: &mut Gradients) -> Result<UpdateStats> {
        let c = self.config;
        let grad_norm = grads.norm();
        if !grad_norm.is_finite() {
            return Err(Error::Internal(format!("the gradient's norm is {grad_norm}")));
        }
        if let Some(max_norm) = c.max_grad_norm {
            // As torch.nn.utils.clip_grad_norm_: scale by max/(norm + 1e-6) when that is below 1.
            let coefficient = max_norm / (grad_norm + 1e-6);
            if coefficient < 1.0 {
                grads.scale(coefficient);
            }
        }
        let lr = c.lr_at(self.steps_taken);
        self.steps_taken += 1;
        let t = self.steps_taken as i32;
        let (correction1, correction2) = (1.0 - c.beta1.powi(t), 1.0 - c.beta2.powi(t));
        for (n, (slot, grad)) in grads.iter().enumerate() {
            let values = params.get_mut(slot).ok_or_else(|| Error::Internal(format!("no parameter {slot:?}")))?;
            let decay = if slot.decays() { c.weight_decay } else { 0.0 };
            let (m, v) = (&mut self.first_moments[n], &mut self.second_moments[n]);
            // Element by element, so the chunks (split across the caller's rayon pool) do not
            // change the result.
            let update = |(((w, g), m), v): Chunks<'_>| {
                for (((w, &g), m), v) in w.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
                    let mut weight = *w as f64 * (1.0 - lr * decay);
                    let m_new = *m as f64 + (g - *m as f64) * (1.0 - c.beta1);
                    let v_new = *v as f64 * c.beta2 + (1.0 - c.beta2) * g * g;
                    let denominator = (v_new.sqrt() / correction2.sqrt()) + c.eps;
                    weight -= lr / correction1 * m_new / denominator;
                    (*w, *m, *v) = (weight as f32, m_new as f32, v_new as f32);
                }
            };
            const CHUNK: usize = 1 << 14;
            values
                .data_mut()
                .par_chunks_mut(CHUNK)
                .zip(grad.par_chunks(CHUNK))
                .zip(m.par_chunks_mut(CHUNK))
                .zip(v.par_chunks_mut(CHUNK))
                .for_each(update);
        }
        // Grouped-query copies got their head's whole gradient in the first copy.
        params.retie_repeated_heads();
        Ok(UpdateStats { lr, grad_norm })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_warms_up_then_decays_to_zero() {
        let c = AdamWConfig {
            lr: 1.0,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            max_grad_norm: None,
            warmup_steps: 4,
            total_steps: 10,
        };
        let lrs: Vec<f64> = (0..11).map(|k| c.lr_at(k)).collect();
        let want = [0.0, 0.25, 0.5, 0.75, 1.0, 5.0 / 6.0, 4.0 / 6.0, 3.0 / 6.0, 2.0 / 6.0, 1.0 / 6.0, 0.0];
        for (k, (a, b)) in lrs.iter().zip(want).enumerate() {
            assert!((a - b).abs() < 1e-15, "update {k}: {a} vs {b}");
        }
    }
}
