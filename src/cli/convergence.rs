//! `simattr convergence`: how fast each quadrature rule converges on one pair.

use std::path::PathBuf;
use std::process::ExitCode;

use simattr::attribution::{convergence, Mode, Quadrature, Rule, Similarity, TextOptions};
use simattr::backend::Backend;
use simattr::net::Encoder;
use simattr::output::provenance::Provenance;
use simattr::output::{files, json, summary};
use simattr::session::default_layer;

use super::{leave_to_exit, load_model, parse_list, progress_bar, ModelArg};

#[derive(clap::Args)]
pub struct ConvergenceArgs {
    #[command(flatten)]
    model: ModelArg,
    /// Layer whose input is attributed (0 = embedding output) [default: the last layer].
    #[arg(long)]
    layer: Option<usize>,
    /// Comma-separated rules.
    #[arg(
        long,
        default_value = "riemann-right,trapezoid,gauss-legendre,gauss-legendre-adaptive",
        value_name = "RULES"
    )]
    rules: String,
    /// Comma-separated step counts (model evaluations per text).
    #[arg(long, default_value = "5,10,20,50,100", value_name = "N,…")]
    steps: String,
    /// cos (as xsbert: A scaled by 1/(|e(a)||e(b)|)), dot, or cos-exact (through the normalization).
    #[arg(long, default_value = "cos")]
    similarity: String,
    /// forward, reverse or auto, as for explain.
    #[arg(long, default_value = "auto", value_name = "forward|reverse|auto")]
    mode: String,
    /// Also write the table as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// The prompt put before text a, as for explain: a name from the model's
    /// config_sentence_transformers.json or the prompt's text [default: the folder's default
    /// prompt, if it names one; "" for none].
    #[arg(long, value_name = "NAME|TEXT")]
    prompt_a: Option<String>,
    /// The prompt put before text b (as --prompt-a).
    #[arg(long, value_name = "NAME|TEXT")]
    prompt_b: Option<String>,
    a: String,
    b: String,
}

pub fn run<B: Backend>(backend: &B, args: ConvergenceArgs) -> anyhow::Result<ExitCode> {
    let similarity: Similarity = args.similarity.parse()?;
    let mode: Mode = args.mode.parse()?;
    let rules: Vec<Rule> = parse_list("--rules", &args.rules)?;
    let steps: Vec<usize> = parse_list("--steps", &args.steps)?;
    if let Some(path) = &args.json {
        files::check_writable(path)?;
    }
    let model = load_model(&args.model)?;
    let encoder = Encoder::new(backend, &model)?;
    let layer = args.layer.unwrap_or_else(|| default_layer(encoder.num_layers()));
    let options = TextOptions { mode, ..TextOptions::new(layer, Quadrature::riemann_right(1)?) };
    let (a, b) = (&args.a, &args.b);
    // Each text after its prompt, as explain reads it (the folder's default where none is given).
    let prompts = [model.prompt(args.prompt_a.as_deref()), model.prompt(args.prompt_b.as_deref())];
    let tokens = [
        model.tokenizer.encode_with_prompt(a, prompts[0].as_deref())?,
        model.tokenizer.encode_with_prompt(b, prompts[1].as_deref())?,
    ];
    let truncated = tokens.iter().any(|t| t.truncated_from.is_some());
    let bar = progress_bar("converging");
    let rows = convergence(&encoder, &model.tokenizer, tokens, &rules, &steps, &options, similarity, &bar);
    bar.0.finish_and_clear();
    let rows = rows?;
    print!("{}", summary::convergence_table(&rows));
    if let Some(path) = &args.json {
        let provenance = Provenance::new(&model, &backend.engine_info()).with_truncated(truncated);
        let texts = [a.as_str(), b.as_str()];
        let doc = json::ConvergenceJson::new(&model, &provenance, texts, &prompts, layer, similarity, mode, &rows);
        files::write_atomic(path, &json::to_pretty_bytes(&doc))?;
        eprintln!("wrote {}", path.display());
    }
    leave_to_exit((encoder, model));
    Ok(ExitCode::SUCCESS)
}
