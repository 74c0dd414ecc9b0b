//! The embeddings as part of the description (`net::embeddings`): two variants the newer
//! families need, built on the tiny BERT fixture's tables: no position table, row 0 of the
//! token types and a scale of `√hidden` with no norm (Gemma's shape), and word plus position
//! rows under RMSNorm with no token types. Each against the sum computed here in f64, and
//! through a whole explanation for completeness; a description and weights that disagree are
//! refused. `tests/training/embeddings.rs` checks their gradients.

use crate::common;

use common::{fixture_dir, max_abs, max_abs_diff};
use simattr::attribution::{explain_pair, Quadrature, Rule, Similarity, TextOptions};
use simattr::backend::prelude::*;
use simattr::backend::reference::CpuReference;
use simattr::model::SentenceModel;
use simattr::net::block::NormKind;
use simattr::net::embeddings::Embeddings;
use simattr::net::families::Network;
use simattr::net::Encoder;
use simattr::params::HostTensor;

type F64 = CpuReference<f64>;

/// No positions, token type 0, scaled by √hidden, no norm.
pub const SCALED: Embeddings =
    Embeddings { positions: false, token_types: true, scale: Some(5.656854249492381), norm: None };
/// Word and position rows, then RMSNorm.
pub const RMS: Embeddings = Embeddings { positions: true, token_types: false, scale: None, norm: Some(NormKind::Rms) };

fn row(table: &HostTensor, id: u32) -> Vec<f64> {
    let width = table.shape[1];
    table.data()[id as usize * width..][..width].iter().map(|&v| v as f64).collect()
}

/// The first layer's input as the description says, computed here row by row.
fn by_hand(model: &SentenceModel, embeddings: Embeddings, ids: &[u32]) -> Vec<f64> {
    let e = &model.params.embeddings;
    let positions = model.config.position_ids().for_ids(ids);
    let mut out = Vec::new();
    for (&id, &position) in ids.iter().zip(&positions) {
        let mut x = row(&e.word, id);
        let mut add = |other: Vec<f64>| x.iter_mut().zip(other).for_each(|(a, b)| *a += b);
        if embeddings.positions {
            add(row(e.position.as_ref().unwrap(), position));
        }
        if embeddings.token_types {
            add(row(e.token_type.as_ref().unwrap(), 0));
        }
        let scale = embeddings.scale.unwrap_or(1.0);
        x.iter_mut().for_each(|v| *v *= scale);
        if embeddings.norm == Some(NormKind::Rms) {
            let gamma = e.norm.as_ref().unwrap().gamma.data();
            let eps = model.config.layer_norm_eps;
            let rms = (x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64 + eps).sqrt();
            x.iter_mut().zip(gamma).for_each(|(v, &g)| *v = g as f64 * *v / rms);
        }
        out.extend(x);
    }
    out
}

fn network(model: &SentenceModel, embeddings: Embeddings) -> Network {
    Network { embeddings, ..Network::of(model) }
}

#[test]
fn described_embeddings_are_their_rows_summed_scaled_and_normed() {
    let b = F64::new();
    for embeddings in [SCALED, RMS] {
        let model = common::tiny_bert_for(embeddings);
        let encoder = Encoder::with_network(&b, &model, network(&model, embeddings)).unwrap();
        let ids = model.tokenizer.encode("the cat sat on the mat").unwrap().ids;
        let got = b.download(&encoder.embed_tokens(&ids, 1).unwrap()).unwrap();
        let want = by_hand(&model, embeddings, &ids);
        let err = max_abs_diff(&got, &want);
        assert!(err <= 1e-12 * max_abs(&want), "{embeddings:?}: differs by {err:e}");
        // The whole pipeline runs on them: an explanation complete at layer 0 (48 Gauss–Legendre steps).
        let options = TextOptions::new(0, Quadrature::new(Rule::GaussLegendre, 48).unwrap());
        let (a, text_b) = ("A man is playing a guitar.", "Someone plays an instrument.");
        let explained = explain_pair(&encoder, &model.tokenizer, a, text_b, &options, Similarity::Dot, &()).unwrap();
        let (score, error) = (explained.pair.score, explained.pair.completeness_error());
        assert!(error <= 1e-9 * score.abs(), "{embeddings:?}: completeness error {error:e} of score {score}");
    }
}

#[test]
fn embeddings_that_disagree_with_their_weights_are_refused() {
    let b = F64::new();
    let error = |model: &SentenceModel, embeddings: Embeddings| match Encoder::with_network(
        &b,
        model,
        network(model, embeddings),
    ) {
        Ok(_) => panic!("built"),
        Err(e) => e.to_string(),
    };
    let fixture = SentenceModel::load(&fixture_dir("tiny-bert")).unwrap();
    assert!(error(&fixture, SCALED).contains("weights have a position table the embeddings' description does not read"));
    let scaled = common::tiny_bert_for(SCALED);
    assert!(error(&scaled, RMS).contains("description reads a position table the weights lack"));
    let without_norm = Embeddings { norm: None, ..Embeddings::bert(true) };
    assert!(error(&fixture, without_norm)
        .contains("weights have an embedding norm the embeddings' description does not read"));
}
