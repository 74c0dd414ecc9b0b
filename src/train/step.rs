//! One training step's numbers: the loss of a batch of pairs on an exact model and its
//! gradient with respect to every parameter.

use super::objective::Objective;
use crate::backend::WeightGradients;
use crate::error::Result;
use crate::model::ReferenceFraming;
use crate::net::backprop::{ForwardPass, Gradients, LinearHeads, MaskSource, TrainingNet};
use crate::net::encoder::upload_params;
use crate::net::shift::ShiftedBatch;
use crate::params::{EncoderParams, HostTensor, Slot};

/// A labelled pair as token ids.
#[derive(Debug, Clone)]
pub struct PairIds {
    pub a: Vec<u32>,
    pub b: Vec<u32>,
    /// In the objective's units (a cosine, or a dot product).
    pub label: f64,
}

pub struct StepResult {
    pub loss: f64,
    pub scores: Vec<f64>,
    pub grads: Gradients,
}

/// Forward and backward over `pairs` as one batch, at the host weights `params`.
pub fn loss_and_gradients<B: WeightGradients>(
    net: &TrainingNet<'_, B>,
    params: &EncoderParams<HostTensor>,
    framing: ReferenceFraming,
    pairs: &[PairIds],
    objective: Objective,
    dropout: Option<&mut dyn MaskSource>,
) -> Result<StepResult> {
    let device_params = upload_params(net.backend, params)?;
    let (loss, scores, pass) = forward(net, &device_params, framing, pairs, objective, dropout)?;
    let mut grads = Gradients::zeros(params);
    for (n, grad) in pass.dense_grads.iter().enumerate() {
        grads.add(Slot::Dense(n), grad)?;
    }
    net.backward(&device_params, &pass.pass, &pass.d_pooled, &mut grads)?;
    Ok(StepResult { loss, scores, grads })
}

/// The loss of `pairs` at weights already on the backend (no dropout), without gradients.
pub fn loss_on<B: WeightGradients>(
    net: &TrainingNet<'_, B>,
    device_params: &EncoderParams<B::Tensor>,
    framing: ReferenceFraming,
    pairs: &[PairIds],
    objective: Objective,
) -> Result<f64> {
    Ok(forward(net, device_params, framing, pairs, objective, None)?.0)
}

struct Forward<T> {
    pass: ForwardPass<T>,
    d_pooled: Vec<Vec<f64>>,
    /// The Dense modules' weight gradients, in order.
    dense_grads: Vec<Vec<f64>>,
}

#[allow(clippy::type_complexity)]
fn forward<B: WeightGradients>(
    net: &TrainingNet<'_, B>,
    device_params: &EncoderParams<B::Tensor>,
    framing: ReferenceFraming,
    pairs: &[PairIds],
    objective: Objective,
    dropout: Option<&mut dyn MaskSource>,
) -> Result<(f64, Vec<f64>, Forward<B::Tensor>)> {
    let texts: Vec<&[u32]> = pairs.iter().flat_map(|p| [p.a.as_slice(), p.b.as_slice()]).collect();
    let shifted = ShiftedBatch::new(&texts, framing);
    let pass = net.forward(device_params, &shifted.sequence_ids(), dropout)?;
    // The shift is taken on the pooled vectors, before the (linear) Dense modules.
    let heads = LinearHeads::of(net.backend, device_params)?;
    let (embeddings, head_inputs) = heads.forward(shifted.embeddings(&net.pooled(&pass)?))?;
    let scored: Vec<(&[f64], &[f64], f64)> = pairs
        .iter()
        .enumerate()
        .map(|(n, p)| (embeddings[2 * n].as_slice(), embeddings[2 * n + 1].as_slice(), p.label))
        .collect();
    let batch = objective.batch_loss(&scored);
    let d_embeddings: Vec<Vec<f64>> = batch.d_u.into_iter().zip(batch.d_v).flat_map(|(u, v)| [u, v]).collect();
    let (d_shifted, dense_grads) = heads.backward(&head_inputs, d_embeddings);
    let d_pooled = shifted.pooled_cotangents(&d_shifted);
    Ok((batch.loss, batch.scores, Forward { pass, d_pooled, dense_grads }))
}
