//! Models of the real shapes with random weights, written from the tiny fixtures: the tiny
//! model's config, tokenizer and pooling, its layer-0 tensors repeated for every layer, each
//! hidden, intermediate and head dimension widened, values drawn at random (LayerNorm scales
//! 1). For measuring speed where the real weights cannot go (a GPU machine that reaches no
//! registry and takes at most 64 MiB of files); the attributions mean nothing.

use std::path::Path;

use serde_json::Value;

use super::pseudo_random;

/// A real model's encoder shape.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub layers: usize,
    pub hidden: usize,
    pub heads: usize,
    pub intermediate: usize,
}

/// all-MiniLM-L6-v2 (BERT), from `tests/fixtures/tiny-bert`.
pub const MINILM: (&str, Shape) = ("tiny-bert", Shape { layers: 6, hidden: 384, heads: 12, intermediate: 1536 });
/// all-mpnet-base-v2 (MPNet, relative attention bias), from `tests/fixtures/tiny-mpnet`.
pub const MPNET: (&str, Shape) = ("tiny-mpnet", Shape { layers: 12, hidden: 768, heads: 12, intermediate: 3072 });

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn write_json(path: &Path, value: &Value) {
    std::fs::write(path, serde_json::to_string_pretty(value).unwrap()).unwrap();
}

/// Writes into `out` the fixture folder `fixture` widened to `shape`.
pub fn write(fixture: &Path, shape: Shape, out: &Path) {
    std::fs::create_dir_all(out.join("1_Pooling")).unwrap();
    let mut config = read_json(&fixture.join("config.json"));
    let number = |key: &str| config[key].as_u64().unwrap_or_else(|| panic!("config.json has no {key}")) as usize;
    let (hidden, intermediate, heads) =
        (number("hidden_size"), number("intermediate_size"), number("num_attention_heads"));
    let positions = number("max_position_embeddings");
    config["num_hidden_layers"] = shape.layers.into();
    config["hidden_size"] = shape.hidden.into();
    config["num_attention_heads"] = shape.heads.into();
    config["intermediate_size"] = shape.intermediate.into();
    write_json(&out.join("config.json"), &config);

    let mut pooling = read_json(&fixture.join("1_Pooling/config.json"));
    pooling["word_embedding_dimension"] = shape.hidden.into();
    write_json(&out.join("1_Pooling/config.json"), &pooling);
    let mut sentence = read_json(&fixture.join("sentence_bert_config.json"));
    sentence["max_seq_length"] = (positions - 2).into();
    write_json(&out.join("sentence_bert_config.json"), &sentence);
    for file in ["modules.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"] {
        if fixture.join(file).exists() {
            std::fs::copy(fixture.join(file), out.join(file)).unwrap();
        }
    }

    let bytes = std::fs::read(fixture.join("model.safetensors")).unwrap();
    let tensors = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let widen = |name: &str, dims: &[usize]| -> Vec<usize> {
        if name.contains("relative_attention_bias") {
            return vec![dims[0], shape.heads]; // [buckets, heads]
        }
        if name.contains("position_embeddings") || name.contains("word_embeddings") || name.contains("token_type") {
            return vec![dims[0], shape.hidden]; // [rows, hidden]: the table keeps its rows
        }
        dims.iter()
            .map(|&d| match d {
                d if d == hidden => shape.hidden,
                d if d == intermediate => shape.intermediate,
                d if d == heads => shape.heads,
                d => d,
            })
            .collect()
    };
    let mut written: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    // By name: the seeds, and so the weights, are the same in every run (safetensors lists
    // the tensors in hash order).
    let mut listed = tensors.tensors();
    listed.sort_by(|(a, _), (b, _)| a.cmp(b));
    for (seed, (name, view)) in listed.into_iter().enumerate() {
        let layer_names: Vec<String> = match name.split_once("layer.0.") {
            Some((before, after)) => (0..shape.layers).map(|i| format!("{before}layer.{i}.{after}")).collect(),
            None if name.contains("layer.") => continue,
            None => vec![name.clone()],
        };
        let dims = widen(&name, view.shape());
        let len: usize = dims.iter().product();
        for (i, layer_name) in layer_names.into_iter().enumerate() {
            let values = if name.contains("LayerNorm.weight") {
                vec![1.0f32; len]
            } else {
                // Uniform with the standard deviation 0.02 of BERT's initialisation.
                pseudo_random(len, (seed * 1000 + i) as u64 + 1, 0.02 * 3f32.sqrt())
            };
            written.push((layer_name, dims.clone(), bytemuck::cast_slice(&values).to_vec()));
        }
    }
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = written
        .iter()
        .map(|(name, dims, data)| {
            (name.clone(), safetensors::tensor::TensorView::new(safetensors::Dtype::F32, dims.clone(), data).unwrap())
        })
        .collect();
    safetensors::serialize_to_file(views, None, &out.join("model.safetensors")).unwrap();
}
