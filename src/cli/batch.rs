//! `simattr batch`: many pairs, or a query against documents, one JSON record per pair.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use simattr::backend::Backend;
use simattr::batch::{rank_documents, read_items, Existing, Format, Item, Outcome, PairExplainer, RecordWriter};
use simattr::net::Encoder;
use simattr::output::{files, html};

use super::{leave_to_exit, load_model, ModelArg};
use super::{pairs_bar, AttributionArgs};

/// The exit status of a run that finished but wrote error records.
const EXIT_WITH_ERROR_RECORDS: u8 = 3;

#[derive(clap::Args)]
pub struct BatchArgs {
    #[command(flatten)]
    model: ModelArg,
    #[command(flatten)]
    attribution: AttributionArgs,
    /// The pairs: .jsonl/.ndjson (objects with "a", "b" and optional "id"), or .csv/.tsv with
    /// a header row naming the columns a, b and optional id. Without an id, a pair's id is its
    /// line number.
    #[arg(value_name = "PAIRS", required_unless_present = "query", conflicts_with_all = ["query", "docs"])]
    input: Option<PathBuf>,
    /// Where the records go, one JSON object per line: the explain JSON with "id" and "line"
    /// (and "rank" for --query), or {"id", "line", "error"} for a pair that failed.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Continue a run that stopped: keep the records already in --out (a partial last line is
    /// cut off) and explain only the pairs whose ids are not there. The settings must match.
    #[arg(long)]
    resume: bool,
    /// Also write an HTML report into DIR: index.html listing every record of --out (those of
    /// a resumed run too), each explained one linked to its interactive page pair-N.html (N:
    /// the record's place in --out).
    #[arg(long, value_name = "DIR")]
    html: Option<PathBuf>,
    /// Keep each text's attribution in DIR across runs (one safetensors file per text, keyed by
    /// the weights' hash and every setting that changes it).
    #[arg(long, value_name = "DIR")]
    cache: Option<PathBuf>,
    /// Memory for the texts' attributions kept during the run [default: 1G].
    #[arg(long, value_name = "SIZE", default_value = "1G", value_parser = super::memory_size)]
    cache_memory: usize,
    /// Cut texts over the model's max_seq_length, as explain does, instead of writing an error
    /// record for them.
    #[arg(long)]
    truncate: bool,
    /// Rank the documents of --docs by similarity to TEXT and explain the best --top.
    #[arg(long, value_name = "TEXT", requires = "docs")]
    query: Option<String>,
    /// The documents for --query: .txt (one per line), .jsonl (objects with "text" and
    /// optional "id"), or .csv/.tsv with a text column.
    #[arg(long, value_name = "FILE", requires = "query")]
    docs: Option<PathBuf>,
    /// How many of the best-ranked documents to explain.
    #[arg(long, value_name = "K", default_value_t = 10, requires = "query")]
    top: usize,
}

/// What a run did, for the closing line and the exit status.
#[derive(Default)]
struct Tally {
    explained: usize,
    errors: usize,
    skipped: usize,
}

pub fn run<B: Backend>(backend: &B, args: BatchArgs) -> anyhow::Result<ExitCode> {
    let attribution = args.attribution.parse()?;
    let (similarity, word_merge) = (attribution.similarity, attribution.word_merge);
    let cache_memory = args.cache_memory;
    // Everything that can be checked is, before the model loads.
    let (path, fields, allow_lines) = match (&args.input, &args.docs) {
        (Some(input), None) => (input.as_path(), ["a", "b"].as_slice(), false),
        (None, Some(docs)) => (docs.as_path(), ["text"].as_slice(), true),
        _ => anyhow::bail!("give a PAIRS file, or --query and --docs"),
    };
    let format = Format::of_path(path, allow_lines)?;
    let items = read_items(path, format, fields)?;
    if !args.out.exists() {
        files::check_writable(&args.out)?;
    }
    if let Some(dir) = &args.html {
        html::prepare_dir(dir)?;
    }
    let model = load_model(&args.model)?;
    let encoder = Encoder::new(backend, &model)?;
    let mut explainer = PairExplainer::new(
        &encoder,
        &model,
        &attribution.options_for(&encoder),
        similarity,
        word_merge,
        args.truncate,
        args.cache.as_deref(),
        cache_memory,
    )?
    .with_prompts(attribution.session.prompts.clone());
    let (mut writer, existing) = RecordWriter::open(&args.out, args.resume)?;
    check_resumable(&existing, &explainer, args.query.as_deref(), &args.out)?;
    let started = Instant::now();
    let tally = match &args.query {
        None => explain_pairs(&mut explainer, &items, &existing, &mut writer)?,
        Some(query) => {
            explain_top_documents(&mut explainer, &encoder, query, &items, args.top, &existing, &mut writer)?
        }
    };
    writer.finish()?;
    let seconds = started.elapsed().as_secs_f64();
    let stats = explainer.cache.stats;
    eprintln!(
        "{} pairs explained, {} error records, {} already in {} ({:.2} pairs/s); texts: {} computed, {} reused from memory, {} from the disk cache{}",
        tally.explained,
        tally.errors,
        tally.skipped,
        args.out.display(),
        (tally.explained + tally.errors) as f64 / seconds.max(1e-9),
        stats.computed,
        stats.memory_hits,
        stats.disk_hits,
        match stats.disk_unreadable {
            0 => String::new(),
            n => format!(" ({n} unreadable cache files recomputed)"),
        }
    );
    if let Some(dir) = &args.html {
        // From the file, read back whole: a resumed run's index covers the old records too.
        let report = html::write_batch_report(&args.out, dir)?;
        eprintln!("wrote {} ({} records, {} pages)", dir.join("index.html").display(), report.records, report.pages);
    }
    drop(explainer);
    leave_to_exit((encoder, model));
    Ok(match tally.errors {
        0 => ExitCode::SUCCESS,
        _ => ExitCode::from(EXIT_WITH_ERROR_RECORDS),
    })
}

/// A resumed file must have been written with the same model and settings (and query).
fn check_resumable<B: Backend>(
    existing: &Existing,
    explainer: &PairExplainer<'_, '_, B>,
    query: Option<&str>,
    out: &Path,
) -> anyhow::Result<()> {
    if existing.cut_bytes > 0 {
        eprintln!("{}: cut off a partial last record ({} bytes) to resume after it", out.display(), existing.cut_bytes);
    }
    if let Some(field) = existing.provenance.as_ref().and_then(|p| p.differs_from(explainer.provenance())) {
        anyhow::bail!(
            "--resume: {} was written with a different {field}; resume it with the same model and settings, or write to a new file",
            out.display()
        );
    }
    if let (Some(query), Some(first)) = (query, &existing.first_text_a) {
        if query != first {
            anyhow::bail!("--resume: {} holds the explanations of another query ({first:?})", out.display());
        }
    }
    Ok(())
}

fn explain_pairs<B: Backend>(
    explainer: &mut PairExplainer<'_, '_, B>,
    items: &[Item],
    existing: &Existing,
    writer: &mut RecordWriter,
) -> anyhow::Result<Tally> {
    let mut tally = Tally::default();
    let todo: Vec<&Item> = items.iter().filter(|item| !existing.ids.contains(item.id())).collect();
    tally.skipped = items.len() - todo.len();
    let bar = pairs_bar(todo.len());
    for item in todo {
        let outcome = explainer.explain_item(item);
        match &outcome {
            Outcome::Explained(_) => tally.explained += 1,
            Outcome::Failed(_) => tally.errors += 1,
        }
        writer.append_line(outcome.to_line()?)?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(tally)
}

fn write_error(
    writer: &mut RecordWriter,
    tally: &mut Tally,
    id: &str,
    line: usize,
    error: String,
) -> anyhow::Result<()> {
    tally.errors += 1;
    writer.append_line(Outcome::failed(id, line, error).to_line()?)?;
    Ok(())
}

/// Ranks every document against the query, prints the ranking of the best `top`, and
/// explains them (the query's attribution is computed once).
fn explain_top_documents<B: Backend>(
    explainer: &mut PairExplainer<'_, '_, B>,
    encoder: &Encoder<'_, B>,
    query: &str,
    items: &[Item],
    top: usize,
    existing: &Existing,
    writer: &mut RecordWriter,
) -> anyhow::Result<Tally> {
    let mut tally = Tally::default();
    let query_tokens = explainer.tokenize_side(query, 0, "--query")?;
    // Documents that cannot be read or tokenized are error records and are not ranked.
    let (mut documents, mut tokens) = (Vec::new(), Vec::new());
    for item in items {
        let failure = match item {
            Item::Row { line, id, fields } => match explainer.tokenize_side(&fields[0], 1, "the document") {
                Ok(document_tokens) => {
                    documents.push(item);
                    tokens.push(document_tokens);
                    continue;
                }
                Err(error) => (id, *line, format!("line {line}: {error}")),
            },
            Item::Bad { line, id, message } => (id, *line, message.clone()),
        };
        match existing.ids.contains(failure.0) {
            true => tally.skipped += 1,
            false => write_error(writer, &mut tally, failure.0, failure.1, failure.2)?,
        }
    }
    let ranking = rank_documents(encoder, explainer.model(), &query_tokens, &tokens, explainer.similarity())?;
    let best: Vec<_> = ranking.into_iter().take(top).collect();
    for (rank, ranked) in best.iter().enumerate() {
        let Item::Row { id, fields, .. } = documents[ranked.document] else { continue };
        println!("{:>3}  {:.4}  {id}  {}", rank + 1, ranked.score, snippet(&fields[0], 70));
    }
    let todo: Vec<_> =
        best.iter().enumerate().filter(|(_, r)| !existing.ids.contains(documents[r.document].id())).collect();
    tally.skipped += best.len() - todo.len();
    let bar = pairs_bar(todo.len());
    for (rank, ranked) in todo {
        let Item::Row { line, id, fields } = documents[ranked.document] else { continue };
        match explainer.explain_tokens(query_tokens.clone(), tokens[ranked.document].clone()) {
            Ok(e) => {
                writer.append(&explainer.record(id, *line, Some(rank + 1), query, &fields[0], &e))?;
                tally.explained += 1;
            }
            Err(error) => write_error(writer, &mut tally, id, *line, format!("line {line}: {error}"))?,
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(tally)
}

/// The first `width` characters of `text` on one line.
fn snippet(text: &str, width: usize) -> String {
    let flat: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    match flat.chars().count() > width {
        true => format!("{}…", flat.chars().take(width - 1).collect::<String>()),
        false => flat,
    }
}
