//! The rotary families beyond their goldens (`end_to_end` checks those on every backend):
//! both spellings of their configs read to the same network, and what their masks promise,
//! checked from the engine's own states on the f64 oracle: a causal decoder's rows never see
//! later tokens, and a sliding layer's rows see only keys within its window.

use crate::common;

use common::{copy_model, fixture_dir, max_abs_diff};
use simattr::backend::prelude::*;
use simattr::backend::reference::CpuReference;
use simattr::model::{AttentionMask, SentenceModel};
use simattr::net::Encoder;

type F64 = CpuReference<f64>;

const TEXT: &str = "A man is playing a guitar on the stage tonight.";

/// The fixture loaded from `config.legacy.json`, the older key names of the real Hub folders.
fn legacy(fixture: &str) -> (tempfile::TempDir, SentenceModel) {
    let dir = copy_model(&fixture_dir(fixture));
    std::fs::copy(dir.path().join("config.legacy.json"), dir.path().join("config.json")).unwrap();
    let model = SentenceModel::load(dir.path()).unwrap();
    (dir, model)
}

#[test]
fn both_config_spellings_give_the_same_network() {
    let b = F64::new();
    for fixture in ["tiny-qwen3", "tiny-gemma3", "tiny-modernbert"] {
        let current = SentenceModel::load(&fixture_dir(fixture)).unwrap();
        let (_dir, older) = legacy(fixture);
        let (c, o) = (&current.config, &older.config);
        assert_eq!(c.layers, o.layers, "{fixture}: each layer's rotary θ and mask");
        assert_eq!((c.head_dim, c.num_kv_heads, c.pad_token_id), (o.head_dim, o.num_kv_heads, o.pad_token_id));
        assert_eq!((c.attention_scale, c.embedding_scale), (o.attention_scale, o.embedding_scale), "{fixture}");
        let ids = current.tokenizer.encode(TEXT).unwrap().ids;
        let embed = |model: &SentenceModel| {
            let encoder = Encoder::new(&b, model).unwrap();
            encoder.embed(&ids, 1, encoder.pool_all()).unwrap()
        };
        assert!(max_abs_diff(&embed(&current), &embed(&older)) < 1e-14, "{fixture}: embeddings differ");
    }
    // What the table in tests/reference/README.md says each fixture's layers are.
    let layers = |fixture: &str| SentenceModel::load(&fixture_dir(fixture)).unwrap().config.layers;
    let spec = |l: &[simattr::model::LayerAttention]| l.iter().map(|l| (l.rope_theta, l.mask)).collect::<Vec<_>>();
    let window = AttentionMask::Window { radius: 2 };
    assert_eq!(spec(&layers("tiny-qwen3")), vec![(Some(1e6), AttentionMask::Causal); 3]);
    assert_eq!(
        spec(&layers("tiny-gemma3")),
        vec![(Some(1e4), window), (Some(1e4), window), (Some(1e6), AttentionMask::Full)]
    );
    assert_eq!(
        spec(&layers("tiny-modernbert")),
        vec![(Some(160000.0), AttentionMask::Full), (Some(1e4), window), (Some(1e4), window)]
    );
}

/// Which output rows of layers `from..to` change when input row `moved` does.
fn rows_reached(model: &SentenceModel, from: usize, to: usize, moved: usize) -> Vec<usize> {
    let b = F64::new();
    let encoder = Encoder::new(&b, model).unwrap();
    let ids = model.tokenizer.encode(TEXT).unwrap().ids;
    let (tokens, h) = (ids.len(), model.config.hidden_size);
    let x = b.download(&encoder.states_at(&ids, 1, from).unwrap()).unwrap();
    let mut nudged = x.clone();
    nudged[moved * h..(moved + 1) * h].iter_mut().for_each(|v| *v += 0.5);
    let run = |input: &[f64]| {
        let input = b.upload_f64(input, None).unwrap();
        b.download(&encoder.forward_layers(input, from, to, 1, tokens).unwrap()).unwrap()
    };
    let (before, after) = (run(&x), run(&nudged));
    (0..tokens).filter(|&i| max_abs_diff(&before[i * h..(i + 1) * h], &after[i * h..(i + 1) * h]) > 0.0).collect()
}

#[test]
fn a_causal_decoder_never_looks_ahead() {
    let model = SentenceModel::load(&fixture_dir("tiny-qwen3")).unwrap();
    let tokens = model.tokenizer.encode(TEXT).unwrap().ids.len();
    for moved in [0, 3, tokens - 1] {
        // Through all three layers, a token reaches itself and every later token, no earlier one.
        assert_eq!(rows_reached(&model, 0, 3, moved), (moved..tokens).collect::<Vec<_>>(), "token {moved} moved");
    }
}

#[test]
fn a_sliding_layer_sees_only_its_window() {
    // Gemma's layer 0 and ModernBERT's layer 1 slide (|i − j| ≤ 2); the layers after a global
    // one reach everything.
    for (fixture, layer) in [("tiny-gemma3", 0), ("tiny-modernbert", 1)] {
        let model = SentenceModel::load(&fixture_dir(fixture)).unwrap();
        let tokens = model.tokenizer.encode(TEXT).unwrap().ids.len();
        for moved in [0, 5, tokens - 1] {
            let window: Vec<usize> = (moved.saturating_sub(2)..(moved + 3).min(tokens)).collect();
            assert_eq!(rows_reached(&model, layer, layer + 1, moved), window, "{fixture}: token {moved} moved");
        }
        let global = model.config.layers.iter().position(|l| l.mask == AttentionMask::Full).unwrap();
        assert_eq!(rows_reached(&model, global, global + 1, 0), (0..tokens).collect::<Vec<_>>(), "{fixture}");
    }
}

/// The word table's pad row as `transformers` builds the table (`padding_idx`, which training
/// leaves alone): the configured pad, else the config class's default; none for T5 and for a
/// Qwen3 config without one.
#[test]
fn the_word_tables_padding_idx_follows_transformers() {
    let config = |fixture: &str, edit: &dyn Fn(&mut serde_json::Value)| {
        let dir = copy_model(&fixture_dir(fixture));
        let path = dir.path().join("config.json");
        let mut json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        edit(&mut json);
        std::fs::write(&path, json.to_string()).unwrap();
        simattr::model::config::read_encoder_config(&path).unwrap().padding_idx
    };
    let unchanged = |_: &mut serde_json::Value| {};
    let no_pad = |c: &mut serde_json::Value| {
        c.as_object_mut().unwrap().remove("pad_token_id");
    };
    assert_eq!(config("tiny-t5", &unchanged), None, "T5's table has no padding_idx");
    assert_eq!(config("tiny-qwen3", &unchanged), None, "tiny-qwen3 has no pad token");
    assert_eq!(config("tiny-qwen3", &|c| c["pad_token_id"] = 3.into()), Some(3));
    assert_eq!(config("tiny-bert", &unchanged), Some(0));
    assert_eq!(config("tiny-roberta", &no_pad), Some(1), "RobertaConfig's default");
    assert_eq!(config("tiny-modernbert", &no_pad), Some(50283), "ModernBertConfig's default");
    assert_eq!(config("tiny-gemma3", &no_pad), Some(0), "Gemma3TextConfig's default");
    assert_eq!(config("tiny-nomic-bert", &unchanged), Some(0), "NomicBERT's config omits it");
}
