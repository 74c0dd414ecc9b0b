//! Tier 1, end to end on the tiny fixtures (one per architecture and pooling mode): the
//! PyTorch goldens, completeness and its rate of convergence, and results that do not depend
//! on threads or on how the work is split.

use simattr::attribution::{
    attribute_text, explain_pair, reference_ids, Method, Mode, Quadrature, Rule, Similarity, TextOptions,
};
use simattr::backend::prelude::*;
use simattr::backend::reference::CpuReference;
use simattr::backend::BackendSettings;
use simattr::embed::{embed_text, embed_tokenized};
use simattr::model::SentenceModel;
use simattr::net::pooling::Pool;
use simattr::net::Encoder;

use crate::common::golden_check::{check_attributions, check_attributions_in, check_embeddings};
use crate::common::{fixture_dir, golden, max_abs, max_abs_diff, tiny_model_dir};
use crate::F32_GOLDEN_TOLERANCE;

pub fn tiny_embeddings<B: Backend>(b: &B, fixture: &str) {
    check_embeddings(b, &fixture_dir(fixture), &golden(&format!("{fixture}.json")), 1e-5);
}

pub fn tiny_attributions<B: Backend>(b: &B, fixture: &str) {
    let golden = golden(&format!("{fixture}.json"));
    let checked = check_attributions(b, &fixture_dir(fixture), &golden, F32_GOLDEN_TOLERANCE, |_| true);
    // 3 pairs × 2 layers × 2 step counts × 2 similarities, or (the generic generator's) 3
    // pairs × 3 layers × 2 similarities.
    assert!(checked >= 18, "{fixture}: only {checked} golden cases");
}

/// The suites that run a GPU's kernels on this machine's CPU (WGSL on lavapipe, the CUDA
/// kernels on the harness, through the emulated driver), where reverse mode costs 10× a CPU
/// backend's.
const SIMULATED_GPU_SUITES: [&str; 3] = ["wgpu_f32", "cuda_emu_f32", "cuda_f32"];

/// The same golden cases with `P` from reverse mode (output cotangents pulled back through
/// the layers, as xsbert computes it). On a simulated GPU (`suite`), every pair, layer and
/// similarity at the golden file's fewest steps only: a step count changes how often the same
/// launches run, not which (`reverse_mode_equals_forward_mode` checks reverse against forward
/// there too, and the CPU backends take every case).
pub fn tiny_attributions_reverse<B: Backend>(b: &B, fixture: &str, suite: &str) {
    let golden = golden(&format!("{fixture}.json"));
    let steps = |case: &serde_json::Value| case["steps"].as_u64().unwrap_or(0);
    let fewest = golden["attributions"].as_array().and_then(|cases| cases.iter().map(steps).min()).unwrap_or(0);
    let every_case = !SIMULATED_GPU_SUITES.contains(&suite);
    let chosen = |case: &serde_json::Value| every_case || steps(case) == fewest;
    let checked = check_attributions_in(Mode::Reverse, b, &fixture_dir(fixture), &golden, F32_GOLDEN_TOLERANCE, chosen);
    // 3 pairs × 2 layers × 2 similarities at the fewest steps, at least.
    assert!(checked >= 12, "{fixture}: only {checked} golden cases");
}

/// The folders `tests/reference/include_prompt_goldens.py` derives from the fixtures with a
/// Pooling that leaves prompts out (`include_prompt: false`), one per pooling mode.
pub const INCLUDE_PROMPT_FALSE: [&str; 5] =
    ["tiny-bert-cls", "tiny-roberta", "tiny-mpnet-max", "tiny-bert-lasttoken", "tiny-bert-weightedmean"];

/// `fixture` as `include_prompt_goldens.py` derives it: its Pooling config with
/// `include_prompt: false`, and the golden file's `config_sentence_transformers.json`.
fn without_prompt_pooling(fixture: &str, golden: &serde_json::Value) -> tempfile::TempDir {
    assert_eq!(golden["derived_from"], fixture);
    assert_eq!(golden["include_prompt"], false);
    let dir = crate::common::copy_model(&fixture_dir(fixture));
    let pooling = dir.path().join("1_Pooling/config.json");
    let mut config: serde_json::Value = serde_json::from_slice(&std::fs::read(&pooling).unwrap()).unwrap();
    config["include_prompt"] = false.into();
    std::fs::write(&pooling, serde_json::to_vec(&config).unwrap()).unwrap();
    let prompts = serde_json::to_vec(&golden["config_sentence_transformers"]).unwrap();
    std::fs::write(dir.path().join("config_sentence_transformers.json"), prompts).unwrap();
    dir
}

/// A Pooling that leaves prompts out, in each pooling mode: the embeddings of prompted and
/// plain texts, and the attributions of a query/document pair in forward and reverse mode, as
/// sentence-transformers gives them in float64 (tests/fixtures/golden/include-prompt/).
pub fn prompt_left_out_of_pooling<B: Backend>(b: &B, fixture: &str) {
    let golden = golden(&format!("include-prompt/{fixture}.json"));
    let dir = without_prompt_pooling(fixture, &golden);
    let model = SentenceModel::load(dir.path()).unwrap();
    assert!(!model.include_prompt, "{fixture}: the derived folder leaves prompts out");
    check_embeddings(b, dir.path(), &golden, 1e-5);
    for mode in [Mode::Forward, Mode::Reverse] {
        let checked = check_attributions_in(mode, b, dir.path(), &golden, F32_GOLDEN_TOLERANCE, |_| true);
        // One prompted pair at two layers with two similarities.
        assert_eq!(checked, 4, "{fixture}: {} golden cases in {}", checked, mode.name());
    }
}

/// Forward and reverse mode give the same `P` (within f32 rounding, 1e-5 of max|P|) from every
/// layer, one pass or many (a small row cap splits the cotangents into passes: 200 rows hold
/// the primal, its tape and a dozen of the 32 cotangents of a 9-token text).
pub fn reverse_mode_equals_forward_mode<B: Backend>(b: &B, fixture: &str) {
    let model = SentenceModel::load(&fixture_dir(fixture)).unwrap();
    let encoder = Encoder::new(b, &model).unwrap();
    for layer in 0..encoder.num_layers() {
        let p = |mode: Mode, max_rows_per_pass: Option<usize>| {
            let quadrature = Quadrature::riemann_right(4).unwrap();
            let options = TextOptions { mode, max_rows_per_pass, ..TextOptions::new(layer, quadrature) };
            let tokenized = model.tokenizer.encode("A man is playing a guitar.").unwrap();
            attribute_text(&encoder, &model.tokenizer, tokenized, &options, &()).unwrap().projection
        };
        let forward = p(Mode::Forward, None);
        let scale = max_abs(&forward);
        for rows in [None, Some(200)] {
            let err = max_abs_diff(&forward, &p(Mode::Reverse, rows)) / scale;
            assert!(
                err <= 1e-5,
                "{fixture} layer {layer}, rows per pass {rows:?}: reverse differs by {err:e} of max|P|"
            );
        }
    }
}

/// The right Riemann rule is first order: 16× the steps must cut the completeness error by at
/// least 10× (docs/design.md §1), and at N = 80 each text's identity holds within 1%.
pub fn completeness_converges<B: Backend>(b: &B) {
    let model = SentenceModel::load(&tiny_model_dir()).unwrap();
    let encoder = Encoder::new(b, &model).unwrap();
    let (a, text_b) = ("A man is playing a guitar.", "Someone plays an instrument.");
    for layer in [0, 2] {
        for similarity in [Similarity::Dot, Similarity::Cos] {
            let mut errors = Vec::new();
            for steps in [5, 20, 80] {
                let options = TextOptions::new(layer, Quadrature::riemann_right(steps).unwrap());
                let e = explain_pair(&encoder, &model.tokenizer, a, text_b, &options, similarity, &()).unwrap();
                errors.push(e.pair.completeness_error());
                if steps == 80 {
                    for text in [&e.a, &e.b] {
                        let rel = text.relative_identity_error();
                        assert!(rel < 0.01, "layer {layer}: identity error {rel:.4} ≥ 1% at N = 80");
                    }
                }
            }
            let label = format!("{} layer {layer} {}", b.name(), similarity.name());
            assert!(
                errors[0] > errors[1] && errors[1] > errors[2],
                "{label}: errors {errors:?} do not shrink with N = 5, 20, 80"
            );
            let ratio = errors[0] / errors[2];
            eprintln!("{label}: completeness error(5)/error(80) = {ratio:.1}");
            assert!(ratio >= 10.0, "{label}: error(N=5)/error(N=80) = {ratio:.2} < 10");
        }
    }
}

/// The better rules pay off on the tiny model: Gauss–Legendre, plain and adaptive, at 20 steps
/// has a smaller completeness error than right Riemann at 100, at the embedding output and in
/// the last layer, and the trapezoid's error shrinks about as 1/N² (5 → 20 steps: at least 8×).
pub fn better_rules_converge_faster<B: Backend>(b: &B) {
    let model = SentenceModel::load(&tiny_model_dir()).unwrap();
    let encoder = Encoder::new(b, &model).unwrap();
    let (a, text_b) = ("A man is playing a guitar.", "Someone plays an instrument.");
    for layer in [0, 2] {
        for similarity in [Similarity::Dot, Similarity::Cos] {
            let error = |rule: Rule, steps: usize| {
                let options = TextOptions::new(layer, Quadrature::new(rule, steps).unwrap());
                explain_pair(&encoder, &model.tokenizer, a, text_b, &options, similarity, &())
                    .unwrap()
                    .pair
                    .completeness_error()
            };
            let label = format!("{} layer {layer} {}", b.name(), similarity.name());
            let riemann_100 = error(Rule::RiemannRight, 100);
            for rule in [Rule::GaussLegendre, Rule::GaussLegendreAdaptive] {
                let gauss_20 = error(rule, 20);
                eprintln!("{label}: {} 20 {gauss_20:.2e}, riemann-right 100 {riemann_100:.2e}", rule.name());
                assert!(
                    gauss_20 < riemann_100,
                    "{label}: {} at 20 steps {gauss_20:e} ≥ riemann-right at 100 {riemann_100:e}",
                    rule.name()
                );
            }
            let (trapezoid_5, trapezoid_20) = (error(Rule::Trapezoid, 5), error(Rule::Trapezoid, 20));
            assert!(
                trapezoid_5 > 8.0 * trapezoid_20,
                "{label}: trapezoid 5 → 20 steps: {trapezoid_5:e} → {trapezoid_20:e}"
            );
        }
    }
}

/// The decomposition baseline (xsbert's `explain_by_decomposition`) has no reference terms and
/// adds up to the score exactly; entry `ij` is the output token states' dot product over
/// `T_a·T_b`, scaled by `1/(|e(a)||e(b)|)` for cos, and the texts' embeddings are the model's.
pub fn decomposition_adds_up_to_the_score<B: Backend>(b: &B) {
    let model = SentenceModel::load(&tiny_model_dir()).unwrap();
    let encoder = Encoder::new(b, &model).unwrap();
    let (a, text_b) = ("A man is playing a guitar.", "Someone plays an instrument.");
    let options =
        TextOptions { method: Method::Decomposition, ..TextOptions::new(0, Quadrature::riemann_right(1).unwrap()) };
    let states = |text: &str| {
        let ids = model.tokenizer.encode(text).unwrap().ids;
        let x = encoder.states_at(&ids, 1, 0).unwrap();
        b.download(&encoder.forward_layers(x, 0, encoder.num_layers(), 1, ids.len()).unwrap()).unwrap()
    };
    let (ya, yb, h) = (states(a), states(text_b), encoder.hidden());
    let (ta, tb) = (ya.len() / h, yb.len() / h);
    for similarity in [Similarity::Dot, Similarity::Cos] {
        let e = explain_pair(&encoder, &model.tokenizer, a, text_b, &options, similarity, &()).unwrap();
        let r = e.pair.reference_terms;
        assert_eq!([r.reference_a_b, r.a_reference_b, r.reference_a_reference_b], [0.0; 3]);
        let (sum, score) = (e.pair.attribution_sum, e.pair.score);
        assert!(
            (sum - score).abs() <= 1e-12 * score.abs(),
            "{}: Σ A = {sum} but the score is {score}",
            similarity.name()
        );
        assert_eq!(e.a.mode, None, "no derivative was taken");
        let scale = score / (0..h).map(|d| e.a.embedding[d] * e.b.embedding[d]).sum::<f64>();
        for i in 0..ta {
            for j in 0..tb {
                let dot: f64 = (0..h).map(|d| ya[i * h + d] * yb[j * h + d]).sum();
                let want = dot / (ta * tb) as f64 * scale;
                let got = e.pair.matrix[i * tb + j];
                assert!((got - want).abs() <= 1e-12 * want.abs().max(1e-9), "A[{i}, {j}] = {got}, expected {want}");
            }
        }
        let embedding = embed_text(&encoder, &model, a, false).unwrap().vector;
        assert!(max_abs_diff(&embedding, &e.a.embedding) <= 1e-6 * max_abs(&embedding));
    }
}

/// The decomposition of any pooling that weighs the token states (here `mean_sqrt_len_tokens`
/// with a prompt left out of it, and CLS) adds up to the score exactly, and its embeddings are
/// the model's.
pub fn decomposition_splits_weighted_poolings<B: Backend>(b: &B) {
    use simattr::attribution::{explain_tokenized, Method};
    use simattr::embed::embed_prompted;
    for (fixture, prompt) in [("tiny-bert-sqrtlen", Some("query")), ("tiny-bert-cls", None)] {
        let model = SentenceModel::load(&fixture_dir(fixture)).unwrap();
        let encoder = Encoder::new(b, &model).unwrap();
        let (a, text_b) = ("A man is playing a guitar.", "Someone plays an instrument.");
        let quadrature = Quadrature::riemann_right(1).unwrap();
        let options = TextOptions { method: Method::Decomposition, ..TextOptions::new(0, quadrature) };
        let prompt_text = model.prompt(prompt);
        let tokens = [
            model.tokenizer.encode_with_prompt(a, prompt_text.as_deref()).unwrap(),
            model.tokenizer.encode(text_b).unwrap(),
        ];
        let e = explain_tokenized(&encoder, &model.tokenizer, tokens, &options, Similarity::Dot, &()).unwrap();
        let (sum, score) = (e.pair.attribution_sum, e.pair.score);
        assert!((sum - score).abs() <= 1e-12 * score.abs(), "{fixture}: Σ A = {sum} but the score is {score}");
        let embedding = embed_prompted(&encoder, &model, a, prompt, false).unwrap().vector;
        let err = max_abs_diff(&embedding, &e.a.embedding) / max_abs(&embedding);
        assert!(err <= 1e-6, "{fixture}: the decomposition's embedding is off by {err:.1e}");
    }
}

/// `--similarity cos-exact` differentiates through the normalization, so `Σ A` converges to
/// `cos − n(r_a)·n(b) − n(a)·n(r_b) + n(r_a)·n(r_b)` (with the model's own embeddings of the
/// texts and of their reference inputs) as the quadrature error vanishes, in forward and in
/// reverse mode alike; the score is the cosine.
pub fn cos_exact_adds_up_as_the_quadrature_converges<B: Backend>(b: &B) {
    let model = SentenceModel::load(&tiny_model_dir()).unwrap();
    let encoder = Encoder::new(b, &model).unwrap();
    let (a, text_b) = ("A man is playing a guitar.", "Someone plays an instrument.");
    let unit = |text: &str, reference: bool| {
        let ids = model.tokenizer.encode(text).unwrap().ids;
        let ids = if reference { reference_ids(&model.tokenizer, ids.len()) } else { ids };
        let e = encoder.embed(&ids, 1, encoder.pool_all()).unwrap();
        let norm = e.iter().map(|x| x * x).sum::<f64>().sqrt();
        e.iter().map(|x| x / norm).collect::<Vec<f64>>()
    };
    let dot = |x: &[f64], y: &[f64]| x.iter().zip(y).map(|(x, y)| x * y).sum::<f64>();
    let (na, nb, nra, nrb) = (unit(a, false), unit(text_b, false), unit(a, true), unit(text_b, true));
    let attributable = dot(&na, &nb) - dot(&nra, &nb) - dot(&na, &nrb) + dot(&nra, &nrb);
    for layer in [0, 2] {
        let run = |mode: Mode, steps: usize| {
            let options =
                TextOptions { mode, ..TextOptions::new(layer, Quadrature::new(Rule::GaussLegendre, steps).unwrap()) };
            explain_pair(&encoder, &model.tokenizer, a, text_b, &options, Similarity::CosExact, &()).unwrap()
        };
        let (coarse, fine) = (run(Mode::Forward, 4), run(Mode::Forward, 20));
        let label = format!("{} layer {layer}", b.name());
        assert!((fine.pair.score - dot(&na, &nb)).abs() < 1e-6, "{label}: the score is the cosine");
        assert!(
            (fine.pair.attributable() - attributable).abs() < 1e-6,
            "{label}: {} vs {attributable}",
            fine.pair.attributable()
        );
        let (err_coarse, err_fine) = (coarse.pair.completeness_error(), fine.pair.completeness_error());
        eprintln!("{label}: cos-exact completeness error {err_coarse:.2e} at 4 steps, {err_fine:.2e} at 20");
        assert!(err_fine < 1e-5 * attributable.abs(), "{label}: Σ A misses by {err_fine:e} at 20 steps");
        assert!(err_fine < err_coarse / 10.0, "{label}: {err_coarse:e} → {err_fine:e}");
        // Reverse mode takes the normalization's Jacobian into its seeds: the same P.
        let reverse = run(Mode::Reverse, 4);
        for (f, r) in [(&coarse.a, &reverse.a), (&coarse.b, &reverse.b)] {
            let err = max_abs_diff(&f.projection, &r.projection) / max_abs(&f.projection);
            assert!(err <= 1e-5, "{label}: reverse differs from forward by {err:e} of max|P|");
        }
    }
}

/// An exact model (`tiny-mpnet-exact`: tiny-mpnet's weights with simattr's shifted-reference
/// marker) embeds as xsbert's ShiftingReferenceTransformer does in PyTorch (one text at a time
/// and packed); its reference terms are 0 and `Σ A` converges to the score itself; its `P` is
/// the plain model's (the shift is a constant); cos-exact on it is a clear error.
pub fn exact_model_adds_up_to_the_score<B: Backend>(b: &B) {
    let (exact, plain) = (
        SentenceModel::load(&fixture_dir("tiny-mpnet-exact")).unwrap(),
        SentenceModel::load(&fixture_dir("tiny-mpnet")).unwrap(),
    );
    let (encoder, plain_encoder) = (Encoder::new(b, &exact).unwrap(), Encoder::new(b, &plain).unwrap());
    let golden = golden("tiny-mpnet-exact.json");
    let texts: Vec<String> =
        golden["texts"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_string()).collect();
    let tokenized: Vec<_> = texts.iter().map(|t| exact.tokenizer.encode(t).unwrap()).collect();
    let packed = embed_tokenized(&encoder, &exact, &tokenized, true).unwrap();
    for (n, text) in texts.iter().enumerate() {
        let want = crate::common::f64s(&golden["embeddings"][n]);
        let one = embed_text(&encoder, &exact, text, true).unwrap().vector;
        for (what, got) in [("alone", &one), ("packed", &packed[n])] {
            let err = max_abs_diff(got, &want) / max_abs(&want);
            assert!(err <= 1e-5, "{text:?} {what}: exact embedding differs from PyTorch's by {err:e}");
        }
    }
    let (a, text_b) = (texts[0].as_str(), texts[1].as_str());
    for layer in [0, 2] {
        for similarity in [Similarity::Dot, Similarity::Cos] {
            let options = TextOptions::new(layer, Quadrature::new(Rule::GaussLegendre, 40).unwrap());
            let e = explain_pair(&encoder, &exact.tokenizer, a, text_b, &options, similarity, &()).unwrap();
            let label = format!("{} layer {layer} {}", b.name(), similarity.name());
            let r = e.pair.reference_terms;
            assert_eq!([r.reference_a_b, r.a_reference_b, r.reference_a_reference_b], [0.0; 3], "{label}");
            assert_eq!(e.pair.attributable(), e.pair.score, "{label}");
            let err = e.pair.completeness_error() / e.pair.score.abs();
            assert!(
                err < 1e-5,
                "{label}: Σ A = {} misses the score {} by {err:e}",
                e.pair.attribution_sum,
                e.pair.score
            );
            let p = explain_pair(&plain_encoder, &plain.tokenizer, a, text_b, &options, similarity, &()).unwrap();
            let err = max_abs_diff(&e.a.projection, &p.a.projection) / max_abs(&p.a.projection);
            assert!(err <= 1e-6, "{label}: the exact model's P differs from the plain model's by {err:e}");
        }
    }
    let options = TextOptions::new(2, Quadrature::riemann_right(2).unwrap());
    let err = explain_pair(&encoder, &exact.tokenizer, a, text_b, &options, Similarity::CosExact, &()).unwrap_err();
    assert!(err.to_string().contains("cos-exact"), "{err}");
}

/// The bound stated in docs/correctness.md: `P` from any thread count and any split of the work into
/// passes agrees with a one-thread, one-pass run within this fraction of max|P|.
pub const SPLIT_BOUND: f64 = 1e-6;

/// Threads and passes change only the f32 summation order, within `SPLIT_BOUND`.
pub fn passes_and_threads<B: Backend>(make: fn(BackendSettings) -> B) {
    let model = SentenceModel::load(&tiny_model_dir()).unwrap();
    let text = "A man is playing a guitar.";
    let tokens = model.tokenizer.encode(text).unwrap().ids.len();
    let projection = |threads: usize, max_rows_per_pass: Option<usize>| {
        let backend = make(BackendSettings { threads, ..BackendSettings::default() });
        let encoder = Encoder::new(&backend, &model).unwrap();
        let options = TextOptions { max_rows_per_pass, ..TextOptions::new(1, Quadrature::riemann_right(7).unwrap()) };
        let tokenized = model.tokenizer.encode(text).unwrap();
        attribute_text(&encoder, &model.tokenizer, tokenized, &options, &()).unwrap().projection
    };
    // Rows a step's primal takes in a pass (2 for an f64 primal beside f32 tangents).
    let probe = make(BackendSettings::default());
    let primal_rows = probe.primal_precision().bytes().div_ceil(probe.precision().bytes());
    let reference = projection(1, None);
    let scale = max_abs(&reference);
    assert!(scale > 0.0);
    // One direction of one step per pass; a few directions per pass (not dividing T); two
    // steps per pass; and the same on two and three threads.
    for (threads, rows) in [
        (1, Some((1 + primal_rows) * tokens)),
        (1, Some(5 * tokens)),
        (1, Some(3 * tokens * tokens)),
        (2, None),
        (3, Some(5 * tokens)),
    ] {
        let err = max_abs_diff(&reference, &projection(threads, rows)) / scale;
        eprintln!("threads {threads}, rows per pass {rows:?}: max |ΔP| / max|P| = {err:.1e}");
        assert!(err <= SPLIT_BOUND, "threads {threads}, rows per pass {rows:?}: P differs by {err:e} of max|P|");
    }
}

/// The attribution pass with the structure exploited (token directions into the first layer,
/// rows reduced in the last under mean pooling) equals, on the same backend, the plain path:
/// dense tangents through every layer, then the model's pooling. From every layer, so the
/// first layer is also the last once; with every token pooled, and with the first three left
/// out as a prompt is under `include_prompt: false` (CLS then reads row 3).
pub fn structured_pass_equals_plain_path<B: Backend>(b: &B, fixture: &str) {
    let model = SentenceModel::load(&fixture_dir(fixture)).unwrap();
    let encoder = Encoder::new(b, &model).unwrap();
    let ids = model.tokenizer.encode("A man is playing a guitar.").unwrap().ids;
    let reference_ids = simattr::attribution::reference_ids(&model.tokenizer, ids.len());
    let (t, h) = (ids.len(), encoder.hidden());
    for layer in 0..encoder.num_layers() {
        let input = encoder.states_at(&ids, 1, layer).unwrap();
        let reference = encoder.states_at(&reference_ids, 1, layer).unwrap();
        let delta = b.sub(&input, &reference).unwrap();
        let primals = b.interpolate(&reference, &delta, &[0.25, 1.0]).unwrap();
        let pools = [encoder.pool_all(), Pool { skipped: 3, ..encoder.pool_all() }];
        for (directions, pool) in [0..t, 1..3].into_iter().flat_map(|d| pools.map(|p| (d.clone(), p))) {
            let batch = simattr::backend::Batch { steps: 2, tangents: directions.len(), tokens: t };
            let structured =
                encoder.pooled_token_jvp(&primals, &delta, directions.clone(), layer, batch, pool, &|| Ok(())).unwrap();
            let dense = b.token_tangents(&delta, 2, t, h, directions.clone()).unwrap();
            let (states, d_states) = encoder.jvp_layers(&primals, &dense, layer, batch, &|| Ok(())).unwrap();
            let plain = encoder.embeddings_jvp(&states, &d_states, batch, pool).unwrap();
            let (got, want) = (b.download(&structured).unwrap(), b.download(&plain).unwrap());
            let err = max_abs_diff(&got, &want) / max_abs(&want);
            let label = format!("{fixture} layer {layer}, directions {directions:?}, {} skipped", pool.skipped);
            assert!(err <= 1e-5, "{label}: structured vs plain {err:.2e}");
        }
    }
}

/// Texts of different lengths packed into one batch (padding masked) embed exactly as they do
/// alone, up to f32 summation order, and come back in their input order.
pub fn packed_embeddings_equal_single<B: Backend>(b: &B, fixture: &str) {
    use simattr::embed::{embed_text, embed_tokenized};
    let model = SentenceModel::load(&fixture_dir(fixture)).unwrap();
    let encoder = Encoder::new(b, &model).unwrap();
    let texts = ["Hi.", "A man is playing a guitar.", "Someone plays an instrument on a small stage tonight.", "Ok"];
    let tokenized: Vec<_> = texts.iter().map(|t| model.tokenizer.encode(t).unwrap()).collect();
    assert!(tokenized.windows(2).any(|w| w[0].ids.len() != w[1].ids.len()), "the texts must differ in length");
    let packed = embed_tokenized(&encoder, &model, &tokenized, true).unwrap();
    for (text, got) in texts.iter().zip(&packed) {
        let want = embed_text(&encoder, &model, text, true).unwrap().vector;
        let err = max_abs_diff(got, &want) / max_abs(&want);
        assert!(err <= 1e-6, "{fixture}: {text:?}: packed vs alone {err:.2e}");
    }
}

/// What the adaptive rule probes is the path the attribution integrates: at any α, the probe's
/// embedding is the model's at `h_r + α Δ` (the input's at 1, the reference's at 0), and its
/// derivative along the path is the sum of forward mode's token tangents there (what `Σ_i P_di`
/// integrates) and a central difference of the float64 reference's embeddings.
pub fn path_probe_is_the_derivative_along_the_path<B: Backend>(b: &B, fixture: &str) {
    let model = SentenceModel::load(&fixture_dir(fixture)).unwrap();
    let encoder = Encoder::new(b, &model).unwrap();
    let oracle = CpuReference::<f64>::new();
    let oracle_encoder = Encoder::new(&oracle, &model).unwrap();
    let ids = model.tokenizer.encode("A man is playing a guitar.").unwrap().ids;
    let reference_ids = simattr::attribution::reference_ids(&model.tokenizer, ids.len());
    // The attributed embedding's width (after any Dense modules).
    let (t, h) = (ids.len(), encoder.embedding_dim());
    let alphas = [0.0, 0.3, 1.0];
    for layer in 0..encoder.num_layers() {
        let label = format!("{} {fixture} layer {layer}", b.name());
        let (reference, delta) = path_ends(&encoder, &ids, &reference_ids, layer);
        let (values, slopes) =
            encoder.pooled_path_jvp(&reference, &delta, &alphas, layer, t, encoder.pool_all()).unwrap();
        let embed = |ids: &[u32]| {
            encoder.pooled_from(encoder.states_at(ids, 1, layer).unwrap(), layer, 1, t, encoder.pool_all()).unwrap()
        };
        let (at_input, at_reference) = (embed(&ids), embed(&reference_ids));
        let off = |got: &[f64], want: &[f64]| max_abs_diff(got, want) / max_abs(want);
        let (at_0, at_1) = (off(&values[..h], &at_reference), off(&values[2 * h..], &at_input));
        assert!(at_0 <= 1e-6, "{label}: e(0) off by {at_0:.2e} of max|e|");
        // At α = 1 the probe starts from `h_r + (h − h_r)`, which is `h` only up to f32 rounding
        // of the difference: the house f32 tolerance, not the exact start's.
        assert!(at_1 <= crate::F32_OP_TOLERANCE, "{label}: e(1) off by {at_1:.2e} of max|e|");

        let primals = b.interpolate(&reference, &delta, &alphas).unwrap();
        let batch = simattr::backend::Batch { steps: alphas.len(), tangents: t, tokens: t };
        let token_tangents = b
            .download(
                &encoder
                    .pooled_token_jvp(&primals, &delta, 0..t, layer, batch, encoder.pool_all(), &|| Ok(()))
                    .unwrap(),
            )
            .unwrap();
        let summed: Vec<f64> = (0..alphas.len())
            .flat_map(|k| {
                let rows = &token_tangents[k * t * h..(k + 1) * t * h];
                (0..h).map(move |d| (0..t).map(|i| rows[i * h + d]).sum::<f64>())
            })
            .collect();
        let err = max_abs_diff(&slopes, &summed) / max_abs(&summed);
        assert!(err <= 1e-5, "{label}: e' against Σ of the token tangents: {err:.2e}");

        let (oracle_reference, oracle_delta) = path_ends(&oracle_encoder, &ids, &reference_ids, layer);
        let step = 1e-5;
        let shifted: Vec<f64> = alphas.iter().flat_map(|&a| [a - step, a + step]).collect();
        let x = oracle.interpolate(&oracle_reference, &oracle_delta, &shifted).unwrap();
        let pooled = oracle_encoder.pooled_from(x, layer, shifted.len(), t, oracle_encoder.pool_all()).unwrap();
        let central: Vec<f64> = (0..alphas.len())
            .flat_map(|k| {
                let (below, above) = (&pooled[2 * k * h..][..h], &pooled[(2 * k + 1) * h..][..h]);
                below.iter().zip(above).map(|(lo, hi)| (hi - lo) / (2.0 * step)).collect::<Vec<_>>()
            })
            .collect();
        let err = max_abs_diff(&slopes, &central) / max_abs(&central);
        let tolerance = if b.precision() == simattr::backend::Precision::F64 { 1e-8 } else { 1e-5 };
        assert!(err <= tolerance, "{label}: e' against float64 central differences: {err:.2e}");
    }
}

/// The states `h_r` and `Δ = h(x) − h(r)` at `layer`'s input.
fn path_ends<B: Backend>(
    encoder: &Encoder<'_, B>,
    ids: &[u32],
    reference_ids: &[u32],
    layer: usize,
) -> (B::Tensor, B::Tensor) {
    let input = encoder.states_at(ids, 1, layer).unwrap();
    let reference = encoder.states_at(reference_ids, 1, layer).unwrap();
    let delta = encoder.backend.sub(&input, &reference).unwrap();
    (reference, delta)
}
