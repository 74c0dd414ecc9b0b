//! Each distinct text's `P` is computed once: kept in memory for the run (least recently used
//! first out, under a byte budget) and, with `--cache DIR`, on disk across runs as one
//! safetensors file per text. A cached `P` is the computed one, bit for bit.
//!
//! The key is everything that changes `P` (`CacheKey`): the weights' sha256, the architecture,
//! pooling and exact-model flag, the backend with its storage and primal precisions, the
//! method, layer, rule, steps, requested mode, whether the normalized embedding is attributed
//! (cos-exact; cos and dot share `P`), the simattr version and the text's token ids (so the
//! tokenizer and truncation are in it too). A file is used only if the key stored in it is the
//! one asked for; an unreadable file is recomputed and replaced.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;
use serde::Serialize;

use crate::attribution::quadrature::Node;
use crate::attribution::{Mode, TextAttribution, TextOptions};
use crate::error::{Error, Result};
use crate::model::folder::hex;
use crate::model::Tokenized;
use crate::output::files;
use crate::output::provenance::Provenance;
use crate::output::tensors::f64_bytes;

/// The settings half of the key, as a JSON string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheKey(String);

#[derive(Serialize)]
struct KeyFields<'a> {
    simattr_version: &'a str,
    weights_sha256: &'a str,
    architecture: &'a str,
    pooling: &'a str,
    exact_model: bool,
    backend: &'a str,
    precision: &'a str,
    primal_precision: &'a str,
    method: &'static str,
    layer: usize,
    rule: &'static str,
    steps: usize,
    mode: &'static str,
    normalized: bool,
    truncate_dim: Option<usize>,
}

impl CacheKey {
    /// `options` as the texts are attributed (`TextOptions::for_similarity` applied).
    pub fn new(provenance: &Provenance, options: &TextOptions) -> Self {
        let fields = KeyFields {
            simattr_version: &provenance.simattr_version,
            weights_sha256: &provenance.weights_sha256,
            architecture: &provenance.architecture,
            pooling: &provenance.pooling,
            exact_model: provenance.exact_model,
            backend: &provenance.backend,
            precision: &provenance.precision,
            primal_precision: &provenance.primal_precision,
            truncate_dim: provenance.truncate_dim,
            method: options.method.name(),
            layer: options.layer,
            rule: options.quadrature.rule().name(),
            steps: options.quadrature.steps(),
            mode: options.mode.name(),
            normalized: options.normalized,
        };
        CacheKey(serde_json::to_string(&fields).unwrap_or_default())
    }

    /// The file name of one text's entry: sha256 of the settings and the ids, and of the
    /// tokens pooling leaves out where it leaves any (the same ids read as prompt and text, or
    /// as text alone, pool differently under `include_prompt: false`).
    fn file_name(&self, text: &TextId) -> String {
        use sha2::Digest;
        let mut hasher = sha2::Sha256::new();
        hasher.update(self.0.as_bytes());
        text.ids.iter().for_each(|id| hasher.update(id.to_le_bytes()));
        if text.unpooled > 0 {
            hasher.update(b"unpooled");
            hasher.update((text.unpooled as u64).to_le_bytes());
        }
        format!("{}.safetensors", hex(&hasher.finalize()))
    }
}

/// What tells two texts' `P` apart under one key: the ids, and how many leading tokens (a
/// prompt) pooling leaves out.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct TextId {
    ids: Vec<u32>,
    unpooled: usize,
}

/// How the texts' `P` were found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub computed: usize,
    pub memory_hits: usize,
    pub disk_hits: usize,
    /// Disk entries that could not be read (or held another key) and were recomputed.
    pub disk_unreadable: usize,
}

struct Entry {
    attribution: TextAttribution,
    stamp: u64,
    bytes: usize,
}

pub struct TextCache {
    key: CacheKey,
    dir: Option<PathBuf>,
    memory: HashMap<TextId, Entry>,
    /// Entries by last use, oldest first.
    by_use: BTreeMap<u64, TextId>,
    /// Whether the model's pooling reads prompts (`include_prompt`).
    include_prompt: bool,
    clock: u64,
    bytes: usize,
    budget: usize,
    pub stats: CacheStats,
}

impl TextCache {
    /// A cache of at most `memory_budget` bytes of `P` in memory, and on disk in `dir` when
    /// given (created if missing), for a model whose pooling reads prompts or not
    /// (`include_prompt`).
    pub fn new(key: CacheKey, dir: Option<&Path>, memory_budget: usize, include_prompt: bool) -> Result<Self> {
        if let Some(dir) = dir {
            std::fs::create_dir_all(dir).map_err(|source| Error::Write { path: dir.to_path_buf(), source })?;
        }
        Ok(TextCache {
            key,
            dir: dir.map(Path::to_path_buf),
            memory: HashMap::new(),
            by_use: BTreeMap::new(),
            include_prompt,
            clock: 0,
            bytes: 0,
            budget: memory_budget,
            stats: CacheStats::default(),
        })
    }

    /// `P` of `tokenized` (whose reference input is `reference_ids`): from memory, from disk,
    /// or from `compute` (then kept in both).
    pub fn get_or_compute(
        &mut self,
        tokenized: Tokenized,
        reference_ids: &[u32],
        compute: impl FnOnce(Tokenized) -> Result<TextAttribution>,
    ) -> Result<TextAttribution> {
        self.clock += 1;
        let id = self.text_id(&tokenized);
        if let Some(entry) = self.memory.get_mut(&id) {
            self.by_use.remove(&entry.stamp);
            entry.stamp = self.clock;
            self.by_use.insert(self.clock, id);
            self.stats.memory_hits += 1;
            return Ok(TextAttribution { tokenized, ..entry.attribution.clone() });
        }
        let from_disk = match &self.dir {
            Some(dir) => {
                let path = dir.join(self.key.file_name(&id));
                match path.is_file() {
                    true => {
                        let read = read_entry(&path, &self.key, &tokenized, reference_ids);
                        if read.is_none() {
                            self.stats.disk_unreadable += 1;
                        }
                        read
                    }
                    false => None,
                }
            }
            None => None,
        };
        let attribution = match from_disk {
            Some(attribution) => {
                self.stats.disk_hits += 1;
                attribution
            }
            None => {
                let attribution = compute(tokenized)?;
                self.stats.computed += 1;
                if let Some(dir) = &self.dir {
                    let path = dir.join(self.key.file_name(&id));
                    files::write_atomic(&path, &entry_bytes(&self.key, &attribution)?)?;
                }
                attribution
            }
        };
        self.remember(id, &attribution);
        Ok(attribution)
    }

    fn text_id(&self, tokenized: &Tokenized) -> TextId {
        TextId { ids: tokenized.ids.clone(), unpooled: tokenized.unpooled_tokens(self.include_prompt) }
    }

    fn remember(&mut self, id: TextId, attribution: &TextAttribution) {
        let bytes = 8 * (attribution.projection.len() + 2 * attribution.dim + 2 * attribution.nodes.len())
            + 4 * attribution.tokens();
        while self.bytes + bytes > self.budget {
            let Some((_, oldest)) = self.by_use.pop_first() else { break };
            if let Some(old) = self.memory.remove(&oldest) {
                self.bytes -= old.bytes;
            }
        }
        if bytes > self.budget {
            return;
        }
        self.by_use.insert(self.clock, id.clone());
        self.memory.insert(id, Entry { attribution: attribution.clone(), stamp: self.clock, bytes });
        self.bytes += bytes;
    }
}

const KEY_FIELD: &str = "simattr_cache_key";

fn entry_bytes(key: &CacheKey, a: &TextAttribution) -> Result<Vec<u8>> {
    let alphas: Vec<f64> = a.nodes.iter().map(|n| n.alpha).collect();
    let weights: Vec<f64> = a.nodes.iter().map(|n| n.weight).collect();
    let tensors = [
        ("projection", vec![a.dim, a.tokens()], f64_bytes(&a.projection)),
        ("embedding", vec![a.dim], f64_bytes(&a.embedding)),
        ("reference_embedding", vec![a.dim], f64_bytes(&a.reference_embedding)),
        ("node_alphas", vec![alphas.len()], f64_bytes(&alphas)),
        ("node_weights", vec![weights.len()], f64_bytes(&weights)),
    ];
    let views = tensors
        .iter()
        .map(|(name, shape, data)| TensorView::new(Dtype::F64, shape.clone(), data).map(|v| (name.to_string(), v)))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::Internal(format!("cache entry: {e}")))?;
    let metadata = HashMap::from([
        (KEY_FIELD.to_string(), key.0.clone()),
        ("ids".to_string(), serde_json::to_string(&a.tokenized.ids).unwrap_or_default()),
        ("mode".to_string(), a.mode.map_or("none", Mode::name).to_string()),
    ]);
    safetensors::tensor::serialize(views, Some(metadata)).map_err(|e| Error::Internal(format!("cache entry: {e}")))
}

/// The entry at `path` if it is whole and holds `key` and these ids; `None` otherwise.
fn read_entry(path: &Path, key: &CacheKey, tokenized: &Tokenized, reference_ids: &[u32]) -> Option<TextAttribution> {
    let bytes = std::fs::read(path).ok()?;
    let (_, header) = SafeTensors::read_metadata(&bytes).ok()?;
    let metadata = header.metadata().as_ref()?;
    if metadata.get(KEY_FIELD)? != &key.0 || metadata.get("ids")? != &serde_json::to_string(&tokenized.ids).ok()? {
        return None;
    }
    let mode = match metadata.get("mode")?.as_str() {
        "none" => None,
        name => Some(name.parse::<Mode>().ok()?),
    };
    let file = SafeTensors::deserialize(&bytes).ok()?;
    let tensor = |name: &str| -> Option<(Vec<f64>, Vec<usize>)> {
        let view = file.tensor(name).ok()?;
        if view.dtype() != Dtype::F64 {
            return None;
        }
        let values = view.data().chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8]))).collect();
        Some((values, view.shape().to_vec()))
    };
    let (projection, shape) = tensor("projection")?;
    let dim = *shape.first()?;
    if shape != [dim, tokenized.ids.len()] {
        return None;
    }
    let (embedding, reference_embedding) = (tensor("embedding")?.0, tensor("reference_embedding")?.0);
    let (alphas, weights) = (tensor("node_alphas")?.0, tensor("node_weights")?.0);
    if embedding.len() != dim || reference_embedding.len() != dim || alphas.len() != weights.len() {
        return None;
    }
    Some(TextAttribution {
        reference_ids: reference_ids.to_vec(),
        tokenized: tokenized.clone(),
        dim,
        projection,
        embedding,
        reference_embedding,
        mode,
        jacobian: None,
        nodes: alphas.into_iter().zip(weights).map(|(alpha, weight)| Node { alpha, weight }).collect(),
    })
}
