//! f16 and bf16 checkpoints load as the f32 values they round to, and give the embeddings of
//! the rounded model.

use crate::common;

use common::{copy_model, max_abs_diff, tiny_model_dir};
use simattr::attribution::{explain_pair, Quadrature, Similarity, TextOptions};
use simattr::backend::cpu::CpuBackend;
use simattr::backend::reference::CpuReference;
use simattr::backend::BackendSettings;
use simattr::embed::embed_text;
use simattr::model::SentenceModel;
use simattr::net::Encoder;

fn convert<const N: usize>(dir: &std::path::Path, dtype: safetensors::Dtype, to_bytes: impl Fn(f32) -> [u8; N]) {
    let path = dir.join("model.safetensors");
    let data = std::fs::read(&path).unwrap();
    let file = safetensors::SafeTensors::deserialize(&data).unwrap();
    let mut converted: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for (name, view) in file.tensors() {
        if view.dtype() != safetensors::Dtype::F32 {
            continue;
        }
        let bytes =
            view.data().chunks_exact(4).flat_map(|b| to_bytes(f32::from_le_bytes([b[0], b[1], b[2], b[3]]))).collect();
        converted.push((name, view.shape().to_vec(), bytes));
    }
    let views: Vec<(String, safetensors::tensor::TensorView)> = converted
        .iter()
        .map(|(n, shape, bytes)| {
            (n.clone(), safetensors::tensor::TensorView::new(dtype, shape.clone(), bytes).unwrap())
        })
        .collect();
    std::fs::write(&path, safetensors::tensor::serialize(views, None).unwrap()).unwrap();
}

fn check(dtype: safetensors::Dtype, to_bytes: impl Fn(f32) -> [u8; 2], round: impl Fn(f32) -> f32, tolerance: f64) {
    let original = SentenceModel::load(&tiny_model_dir()).unwrap();
    let dir = copy_model(&tiny_model_dir());
    convert(dir.path(), dtype, to_bytes);
    let halved = SentenceModel::load(dir.path()).unwrap();
    let (w32, w16) = (original.params.layers[1].ffn_in.weight.data(), halved.params.layers[1].ffn_in.weight.data());
    assert!(w32.iter().zip(w16).all(|(a, b)| round(*a) == *b), "{dtype:?} weights are not the rounded f32 weights");
    assert!(w32.iter().zip(w16).any(|(a, b)| a != b), "{dtype:?} rounding changed nothing: not really converted");

    let backend = CpuReference::<f32>::new();
    let text = "A man is playing a guitar.";
    let e32 = embed_text(&Encoder::new(&backend, &original).unwrap(), &original, text, false).unwrap().vector;
    let e16 = embed_text(&Encoder::new(&backend, &halved).unwrap(), &halved, text, false).unwrap().vector;
    let err = max_abs_diff(&e32, &e16);
    assert!(err > 0.0 && err < tolerance, "{dtype:?}: embedding moved by {err:e}");
}

#[test]
fn f16_checkpoints_load() {
    check(safetensors::Dtype::F16, |x| half::f16::from_f32(x).to_le_bytes(), |x| half::f16::from_f32(x).to_f32(), 2e-2);
}

#[test]
fn bf16_checkpoints_load() {
    check(
        safetensors::Dtype::BF16,
        |x| half::bf16::from_f32(x).to_le_bytes(),
        |x| half::bf16::from_f32(x).to_f32(),
        1e-1,
    );
}

/// A half-precision checkpoint gives exactly (bit for bit) what the f32 checkpoint whose
/// weights were rounded to that precision first gives: loading adds no error of its own.
fn same_as_rounded_f32(
    dtype: safetensors::Dtype,
    to_bytes: impl Fn(f32) -> [u8; 2] + Copy,
    round: impl Fn(f32) -> f32,
) {
    let halved = copy_model(&tiny_model_dir());
    convert(halved.path(), dtype, to_bytes);
    let rounded = copy_model(&tiny_model_dir());
    convert(rounded.path(), safetensors::Dtype::F32, |x| round(x).to_le_bytes());
    let (halved, rounded) = (SentenceModel::load(halved.path()).unwrap(), SentenceModel::load(rounded.path()).unwrap());
    let backend = CpuBackend::new(BackendSettings::default()).unwrap();
    let options = TextOptions::new(1, Quadrature::riemann_right(6).unwrap());
    let (a, b) = ("A man is playing a guitar.", "Someone plays an instrument.");
    let explain = |model: &SentenceModel| {
        let encoder = Encoder::new(&backend, model).unwrap();
        explain_pair(&encoder, &model.tokenizer, a, b, &options, Similarity::Cos, &()).unwrap()
    };
    let (from_half, from_rounded) = (explain(&halved), explain(&rounded));
    assert_eq!(
        from_half.pair.matrix, from_rounded.pair.matrix,
        "{dtype:?}: attributions differ from the rounded f32 model"
    );
    assert_eq!(
        from_half.a.embedding, from_rounded.a.embedding,
        "{dtype:?}: embeddings differ from the rounded f32 model"
    );
    let original = SentenceModel::load(&tiny_model_dir()).unwrap();
    assert_ne!(explain(&original).pair.matrix, from_half.pair.matrix, "{dtype:?}: rounding changed nothing");
}

#[test]
fn f16_checkpoints_equal_the_rounded_f32_model() {
    same_as_rounded_f32(
        safetensors::Dtype::F16,
        |x| half::f16::from_f32(x).to_le_bytes(),
        |x| half::f16::from_f32(x).to_f32(),
    );
}

#[test]
fn bf16_checkpoints_equal_the_rounded_f32_model() {
    same_as_rounded_f32(
        safetensors::Dtype::BF16,
        |x| half::bf16::from_f32(x).to_le_bytes(),
        |x| half::bf16::from_f32(x).to_f32(),
    );
}
