//! End-to-end benchmarks on the real models (fetch them first with `scripts/fetch_model.sh NAME`):
//! `explain` of one pair on all-MiniLM-L6-v2 at layers 0, 3 and 5 with 50 steps and on
//! all-mpnet-base-v2 at layers 11 and 9 with 50 steps and 6 with 20, and `embed` of 32 typical
//! sentences. `SIMATTR_BENCH_MODELS=all-mpnet-base-v2` runs one model's benches only.
//!
//! For `explain` the throughput is in flops (criterion "elements"): the arithmetic simattr does
//! for both texts (`simattr::net::flops`), so criterion prints the achieved GFLOP/s. Before
//! criterion's samples, each layer prints the flops done and those the plain path would need,
//! a median of 3 runs, and the achieved GFLOP/s as a share of the f32 GEMM ceiling measured at
//! the start. For `embed` an element is one sentence, packed (the texts' rows end to end, as
//! `embed` and `batch --query` run them) and one sentence per pass.
//! The model is loaded once, outside the timing; the whole-process figures (model loading
//! included) come from `benches/compare/`.

mod common;

use std::time::Duration;

use criterion::{criterion_group, Criterion, Throughput};
use simattr::attribution::{explain_pair, Quadrature, Similarity, TextOptions};
use simattr::backend::cpu::CpuBackend;
use simattr::backend::{BackendSettings, Precision};
use simattr::embed::{embed_text, embed_tokenized};
use simattr::model::{cache, SentenceModel};
use simattr::net::Encoder;

/// 32 sentences of everyday length (6 to 20 words), as a search or STS workload has them.
const SENTENCES: [&str; 32] = [
    "A man is playing a guitar.",
    "Someone plays an instrument.",
    "The cat sleeps on the warm windowsill all afternoon.",
    "Stock markets fell sharply after the central bank raised interest rates.",
    "How do I reset my password if I no longer have access to my email?",
    "Two children are building a sandcastle on the beach.",
    "The new library opens next Monday with extended weekend hours.",
    "Heavy rain is expected across the northern region tonight.",
    "She finished the marathon in under four hours despite the heat.",
    "The recipe calls for two cups of flour and a pinch of salt.",
    "Engineers found a memory leak in the caching layer of the service.",
    "A woman is slicing tomatoes in a small kitchen.",
    "Scientists discovered a new species of frog in the rainforest.",
    "Please send the quarterly report to the finance team by Friday.",
    "The train to Berlin was delayed by forty minutes.",
    "He adopted a puppy from the local animal shelter.",
    "The museum exhibits paintings from the early twentieth century.",
    "Our flight was cancelled, so we stayed an extra night in Lisbon.",
    "The committee approved the budget after a long debate.",
    "A group of friends is hiking up a steep mountain trail.",
    "Regular exercise improves both sleep quality and mood.",
    "The software update fixes several security vulnerabilities.",
    "Local farmers sell fresh vegetables at the market every Saturday.",
    "The orchestra performed Beethoven's ninth symphony last night.",
    "Can you recommend a good book about the history of mathematics?",
    "The company plans to hire two hundred engineers next year.",
    "A dog is chasing a red ball across the park.",
    "Electric cars are becoming cheaper to buy and to maintain.",
    "The river flooded the village after days of heavy rain.",
    "Students must submit their essays before the end of the semester.",
    "The chef prepared a five-course dinner for the wedding guests.",
    "Wind turbines generate a growing share of the country's electricity.",
];

/// One model's explain benchmark: a pair explained at each `(layer, steps)` setting.
struct ExplainCase {
    model: &'static str,
    pair: (&'static str, &'static str),
    settings: &'static [(usize, usize)],
}

const MINILM: ExplainCase = ExplainCase {
    model: "all-MiniLM-L6-v2",
    pair: ("A man is playing a guitar.", "Someone plays an instrument."),
    settings: &[(0, 50), (3, 50), (5, 50)],
};

/// The papers' model at the deep layers where the EACL paper finds the attributions good, on
/// a pair of about 12 tokens each (13 and 12 with `<s>`/`</s>`).
const MPNET: ExplainCase = ExplainCase {
    model: "all-mpnet-base-v2",
    pair: ("A man is playing a guitar on the stage tonight.", "Someone plays an instrument in front of a crowd."),
    settings: &[(11, 50), (9, 50), (6, 20)],
};

fn bench_explain(c: &mut Criterion, case: &ExplainCase, backend: &CpuBackend, ceiling: f64) -> Option<()> {
    let dir = cache::model_dir(case.model);
    let Ok(model) = SentenceModel::load(&dir) else {
        eprintln!("benches/explain: no model at {} — run scripts/fetch_model.sh {} first", dir.display(), case.model);
        return None;
    };
    let encoder = Encoder::new(backend, &model).unwrap();
    let (a, b) = case.pair;
    let tokens = [a, b].map(|t| model.tokenizer.encode(t).unwrap().ids.len());
    let mut group = c.benchmark_group(format!("explain {}, {}+{} tokens", case.model, tokens[0], tokens[1]));
    group.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(10));
    for &(layer, steps) in case.settings {
        let label = format!("{} layer {layer}, {steps} steps", case.model);
        let flops = tokens.map(|t| encoder.attribution_flops(layer, t, steps));
        let (done, plain): (f64, f64) = (flops.iter().map(|f| f.done()).sum(), flops.iter().map(|f| f.plain()).sum());
        eprintln!(
            "{label}: {:.2} GFLOP done ({:.2} primal), {:.2} GFLOP on the plain path ({:.0}% saved)",
            done / 1e9,
            flops.iter().map(|f| f.primal).sum::<f64>() / 1e9,
            plain / 1e9,
            100.0 * (1.0 - done / plain)
        );
        group.throughput(Throughput::Elements(done as u64));
        let options = TextOptions::new(layer, Quadrature::riemann_right(steps).unwrap());
        let explain = || explain_pair(&encoder, &model.tokenizer, a, b, &options, Similarity::Cos, &()).unwrap();
        let median = common::median_seconds(3, explain);
        let achieved = done / median / 1e9;
        eprintln!(
            "{label}: median of 3 {median:.3} s, {achieved:.0} GFLOP/s achieved = {:.0}% of the GEMM ceiling",
            100.0 * achieved / ceiling
        );
        group.bench_function(format!("layer {layer}, {steps} steps"), |bench| bench.iter(explain));
    }
    group.finish();
    Some(())
}

fn bench_real_models(c: &mut Criterion) {
    let backend = CpuBackend::new(BackendSettings::default()).unwrap();
    let ceiling = common::gemm_ceiling(&backend);
    eprintln!("f32 GEMM ceiling now (best of 7 at 7200×384×1536): {ceiling:.0} GFLOP/s");
    // `SIMATTR_BENCH_MODELS=all-mpnet-base-v2` benches one model only.
    let only = std::env::var("SIMATTR_BENCH_MODELS").unwrap_or_default();
    for case in [&MINILM, &MPNET] {
        if only.is_empty() || only.split(',').any(|m| m == case.model) {
            bench_explain(c, case, &backend, ceiling);
        }
    }
    if !(only.is_empty() || only.split(',').any(|m| m == MINILM.model)) {
        return;
    }
    let Ok(model) = SentenceModel::load(&cache::model_dir(MINILM.model)) else { return };
    // As the CLI embeds: f32 primal states (no Jacobian needs the f64 ones).
    let backend = CpuBackend::new(BackendSettings::default().with_primal(Precision::F32)).unwrap();
    let encoder = Encoder::new(&backend, &model).unwrap();
    let mut group = c.benchmark_group("embed all-MiniLM-L6-v2");
    group.sample_size(20).measurement_time(Duration::from_secs(5));
    group.throughput(Throughput::Elements(SENTENCES.len() as u64));
    group.bench_function("32 sentences (sentences/s)", |bench| {
        bench.iter(|| {
            let tokenized: Vec<_> = SENTENCES.iter().map(|t| model.tokenizer.encode(t).unwrap()).collect();
            embed_tokenized(&encoder, &model, &tokenized, true).unwrap()
        })
    });
    // The same sentences one pass each: what packing (`Encoder::embed_packed`) saves.
    group.bench_function("32 sentences one at a time (sentences/s)", |bench| {
        bench.iter(|| {
            SENTENCES.iter().map(|t| embed_text(&encoder, &model, t, true).unwrap().vector).collect::<Vec<_>>()
        })
    });
    group.finish();
}

criterion_group!(benches, bench_real_models);

/// `criterion_main!`, after the allocator setting the CLI uses (warm memory for the outputs).
fn main() {
    simattr::backend::cpu::keep_freed_memory_for_reuse();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
