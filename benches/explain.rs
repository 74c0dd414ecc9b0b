//! End-to-end benchmarks on the real all-MiniLM-L6-v2 (fetch it first with
//! `scripts/fetch_model.sh`): `explain` of one pair at layers 0, 3 and 5 with 50 steps, and
//! `embed` of 32 typical sentences.
//!
//! For `explain` the throughput is in flops (criterion "elements"): the arithmetic simattr does
//! for both texts (`simattr::net::flops`), so criterion prints the achieved GFLOP/s. Before
//! criterion's samples, each layer prints the flops done and those the plain path would need,
//! a median of 3 runs, and the achieved GFLOP/s as a share of the f32 GEMM ceiling measured at
//! the start. For `embed` an element is one sentence.
//! The model is loaded once, outside the timing; the whole-process figures (model loading
//! included) come from `benches/compare/`.

mod common;

use std::time::{Duration, Instant};

use criterion::{criterion_group, Criterion, Throughput};
use simattr::attribution::{explain_pair, Quadrature, Similarity, TextOptions};
use simattr::backend::cpu::CpuBackend;
use simattr::backend::BackendSettings;
use simattr::embed::embed_tokenized;
use simattr::model::{cache, SentenceModel};
use simattr::net::Encoder;

const PAIR: (&str, &str) = ("A man is playing a guitar.", "Someone plays an instrument.");
const STEPS: usize = 50;

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

fn bench_real_model(c: &mut Criterion) {
    let dir = cache::model_dir(cache::DEFAULT_MODEL);
    let Ok(model) = SentenceModel::load(&dir) else {
        eprintln!("benches/explain: no model at {} — run scripts/fetch_model.sh first", dir.display());
        return;
    };
    let backend = CpuBackend::new(BackendSettings::default()).unwrap();
    let encoder = Encoder::new(&backend, &model).unwrap();
    let ceiling = common::gemm_ceiling(&backend);
    eprintln!("f32 GEMM ceiling now (best of 7 at 7200×384×1536): {ceiling:.0} GFLOP/s");
    let tokens = [PAIR.0, PAIR.1].map(|t| model.tokenizer.encode(t).unwrap().ids.len());

    let mut group =
        c.benchmark_group(format!("explain all-MiniLM-L6-v2 {STEPS} steps, {}+{} tokens", tokens[0], tokens[1]));
    group.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(10));
    for layer in [0, 3, 5] {
        let flops = tokens.map(|t| encoder.attribution_flops(layer, t, STEPS));
        let (done, plain): (f64, f64) = (flops.iter().map(|f| f.done()).sum(), flops.iter().map(|f| f.plain()).sum());
        eprintln!(
            "layer {layer}: {:.2} GFLOP done ({:.2} primal), {:.2} GFLOP on the plain path ({:.0}% saved)",
            done / 1e9,
            flops.iter().map(|f| f.primal).sum::<f64>() / 1e9,
            plain / 1e9,
            100.0 * (1.0 - done / plain)
        );
        group.throughput(Throughput::Elements(done as u64));
        let options = TextOptions::new(layer, Quadrature::riemann_right(STEPS).unwrap());
        let explain = || explain_pair(&encoder, &model.tokenizer, PAIR.0, PAIR.1, &options, Similarity::Cos, &());
        let mut times: Vec<f64> = (0..3)
            .map(|_| {
                let start = Instant::now();
                explain().unwrap();
                start.elapsed().as_secs_f64()
            })
            .collect();
        times.sort_by(f64::total_cmp);
        let achieved = done / times[1] / 1e9;
        eprintln!(
            "layer {layer}: median of 3 {:.3} s, {achieved:.0} GFLOP/s achieved = {:.0}% of the GEMM ceiling",
            times[1],
            100.0 * achieved / ceiling
        );
        group.bench_function(format!("layer {layer}"), |bench| {
            bench.iter(|| {
                explain_pair(&encoder, &model.tokenizer, PAIR.0, PAIR.1, &options, Similarity::Cos, &()).unwrap()
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("embed all-MiniLM-L6-v2");
    group.sample_size(20).measurement_time(Duration::from_secs(5));
    group.throughput(Throughput::Elements(SENTENCES.len() as u64));
    group.bench_function("32 sentences (sentences/s)", |bench| {
        bench.iter(|| {
            let tokenized: Vec<_> = SENTENCES.iter().map(|t| model.tokenizer.encode(t).unwrap()).collect();
            embed_tokenized(&encoder, &model, &tokenized, true).unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, bench_real_model);

/// `criterion_main!`, after the allocator setting the CLI uses (warm memory for the outputs).
fn main() {
    simattr::backend::cpu::keep_freed_memory_for_reuse();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
