//! `simattr embed` and `simattr similarity`: the model's `encode`, without attributions.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use simattr::attribution::Similarity;
use simattr::backend::Backend;
use simattr::embed::{embed_prompted, embed_tokenized};
use simattr::job::truncation_warning;
use simattr::model::Tokenized;
use simattr::net::Encoder;
use simattr::output::provenance::Provenance;
use simattr::output::{files, json};

use super::{leave_to_exit, load_model, ModelArg};

#[derive(clap::Args)]
pub struct EmbedArgs {
    #[command(flatten)]
    model: ModelArg,
    /// The plain mean-pooled vector, without a listed Normalize module.
    #[arg(long)]
    raw: bool,
    /// Also write {"embeddings": [[…], …]} to FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// The prompt put before every text: a name from the model's
    /// config_sentence_transformers.json (`query`, `document`, …) or the prompt's text.
    #[arg(long, value_name = "NAME|TEXT")]
    prompt: Option<String>,
    #[arg(required = true, value_name = "TEXT")]
    texts: Vec<String>,
}

#[derive(clap::Args)]
pub struct SimilarityArgs {
    #[command(flatten)]
    model: ModelArg,
    /// The prompt put before text A (a prompt's name or text, as `embed --prompt`).
    #[arg(long, value_name = "NAME|TEXT")]
    prompt_a: Option<String>,
    /// The prompt put before text B.
    #[arg(long, value_name = "NAME|TEXT")]
    prompt_b: Option<String>,
    a: String,
    b: String,
}

fn warn_truncated(label: &str, tokenized: &Tokenized, max_seq_length: usize) {
    if let Some(warning) = truncation_warning(label, tokenized, max_seq_length) {
        eprintln!("warning: {warning}");
    }
}

pub fn embed<B: Backend>(backend: &B, args: EmbedArgs) -> anyhow::Result<ExitCode> {
    if let Some(path) = &args.json {
        files::check_writable(path)?;
    }
    let model = load_model(&args.model)?;
    let encoder = Encoder::new(backend, &model)?;
    let mut out = json::EmbedJson {
        model: model.path.display().to_string(),
        normalized: !args.raw && model.normalize,
        embeddings: Vec::new(),
        texts: Vec::new(),
        provenance: Provenance::new(&model, &backend.engine_info()),
    };
    let prompt = model.prompt(args.prompt.as_deref());
    let mut tokenized = Vec::with_capacity(args.texts.len());
    for (n, text) in args.texts.iter().enumerate() {
        let label = format!("text {}", n + 1);
        let t = model.tokenizer.encode_with_prompt(text, prompt.as_deref()).with_context(|| label.clone())?;
        warn_truncated(&label, &t, model.max_seq_length);
        tokenized.push(t);
    }
    out.provenance.truncated = tokenized.iter().any(|t| t.truncated_from.is_some());
    let vectors = embed_tokenized(&encoder, &model, &tokenized, !args.raw)?;
    for ((text, t), vector) in args.texts.iter().zip(tokenized).zip(vectors) {
        let shown: Vec<String> = vector.iter().map(|v| format!("{v:.6}")).collect();
        println!("{}", shown.join(" "));
        out.embeddings.push(vector);
        out.texts.push(json::EmbeddingEntryJson {
            text: format!("{}{text}", prompt.as_deref().unwrap_or_default()),
            tokens: t.tokens,
            truncated_from: t.truncated_from,
        });
    }
    if let Some(path) = &args.json {
        files::write_atomic(path, &json::to_pretty_bytes(&out))?;
    }
    leave_to_exit((encoder, model));
    Ok(ExitCode::SUCCESS)
}

pub fn similarity<B: Backend>(backend: &B, args: SimilarityArgs) -> anyhow::Result<ExitCode> {
    let model = load_model(&args.model)?;
    let encoder = Encoder::new(backend, &model)?;
    let ea = embed_prompted(&encoder, &model, &args.a, args.prompt_a.as_deref(), false).context("text A")?;
    let eb = embed_prompted(&encoder, &model, &args.b, args.prompt_b.as_deref(), false).context("text B")?;
    warn_truncated("text A", &ea.tokenized, model.max_seq_length);
    warn_truncated("text B", &eb.tokenized, model.max_seq_length);
    println!("{:.6}", Similarity::Cos.score(&ea.vector, &eb.vector));
    leave_to_exit((encoder, model));
    Ok(ExitCode::SUCCESS)
}
