//! `simattr explain`: one pair, its summary on stdout and the files asked for. What happens
//! between the parsed flags and the bytes of each file is `simattr::job::explain`.

use std::path::PathBuf;
use std::process::ExitCode;

use simattr::attribution::TextOptions;
use simattr::backend::Backend;
use simattr::batch::PairExplainer;
use simattr::job::{self, Artefact};
use simattr::net::Encoder;
use simattr::output::{files, summary};

use super::{leave_to_exit, load_model, progress_bar, AttributionArgs, ModelArg};

#[derive(clap::Args)]
pub struct ExplainArgs {
    #[command(flatten)]
    model: ModelArg,
    #[command(flatten)]
    attribution: AttributionArgs,
    /// Write the explanation as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Write a heatmap PNG to FILE.
    #[arg(long, value_name = "FILE")]
    png: Option<PathBuf>,
    /// Write the heatmap as SVG to FILE (vector: the PNG's layout and colours, labels as text).
    #[arg(long, value_name = "FILE")]
    svg: Option<PathBuf>,
    /// Write an interactive HTML report to FILE: one self-contained page (nothing fetched)
    /// with the heatmap, the tokens, the strongest pairs, the scores and a word view.
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
    /// How many strongest token pairs to print.
    #[arg(long, default_value_t = 10)]
    top: usize,
    /// Write the integrated Jacobians J_a, J_b ([D, T, H]) and Δ_a, Δ_b ([T, H]) as
    /// safetensors to FILE (runs in reverse mode).
    #[arg(long, value_name = "FILE")]
    jacobians: Option<PathBuf>,
    /// Write the feature-pair attributions ([T_a, H, T_b, H], xsbert's uncompressed form;
    /// summed over both H they are the token matrix) as safetensors to FILE (runs in
    /// reverse mode).
    #[arg(long, value_name = "FILE")]
    feature_pairs: Option<PathBuf>,
    a: String,
    b: String,
}

impl ExplainArgs {
    /// Each file asked for, with the artefact that goes into it.
    fn outputs(&self) -> Vec<(Artefact, &PathBuf)> {
        [
            (Artefact::Json, &self.json),
            (Artefact::Png, &self.png),
            (Artefact::Svg, &self.svg),
            (Artefact::Html, &self.html),
            (Artefact::Jacobians, &self.jacobians),
            (Artefact::FeaturePairs, &self.feature_pairs),
        ]
        .into_iter()
        .filter_map(|(artefact, path)| path.as_ref().map(|path| (artefact, path)))
        .collect()
    }
}

pub fn run<B: Backend>(backend: &B, args: ExplainArgs) -> anyhow::Result<ExitCode> {
    let attribution = args.attribution.parse()?;
    let outputs = args.outputs();
    let wanted: Vec<Artefact> = outputs.iter().map(|(artefact, _)| *artefact).collect();
    // Settled before the model loads (a bad combination fails at once); only the default
    // layer waits for the model.
    let (options, notice) = job::job_options(&attribution.session.options, &wanted)?;
    for (_, path) in &outputs {
        files::check_writable(path)?;
    }
    let model = load_model(&args.model)?;
    let encoder = Encoder::new(backend, &model)?;
    let options = TextOptions { layer: attribution.options_for(&encoder).layer, ..options };
    let mut explainer =
        PairExplainer::new(&encoder, &model, &options, attribution.similarity, attribution.word_merge, true, None, 0)?
            .with_prompts(attribution.session.prompts.clone());
    if let Some(notice) = notice {
        eprintln!("{notice}");
    }
    let bar = progress_bar("integrating");
    let explained = job::explain(&mut explainer, &args.a, &args.b, &wanted, &bar);
    bar.0.finish_and_clear();
    let explained = explained?;
    for warning in explained.truncation_warnings(model.max_seq_length) {
        eprintln!("warning: {warning}");
    }
    print!("{}", summary::explanation_summary(&explained.explanation, args.top));
    if let Some(words) = &explained.json.words {
        print!("{}", summary::word_pairs_summary(words, args.top));
    }
    // Everything was rendered before anything is written, and is written as a group: a
    // failure leaves none of the files behind.
    let group: Vec<(&std::path::Path, &[u8])> = outputs
        .iter()
        .zip(&explained.artefacts)
        .map(|((_, path), (_, bytes))| (path.as_path(), bytes.as_slice()))
        .collect();
    files::write_all(&group)?;
    for (_, path) in &outputs {
        eprintln!("wrote {}", path.display());
    }
    leave_to_exit((explainer, explained));
    leave_to_exit((encoder, model));
    Ok(ExitCode::SUCCESS)
}
