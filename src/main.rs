//! The `simattr` command line: embed, similarity, explain, convergence.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use simattr::attribution::words::WordMerge;
use simattr::attribution::{
    convergence, explain_pair, feature_pairs, Method, Mode, Quadrature, Rule, Similarity, TextOptions,
};
use simattr::backend::cuda::describe_devices as describe_cuda_devices;
use simattr::backend::wgpu::describe_adapters;
use simattr::backend::{parse_memory, Backend, BackendChoice, BackendKind, BackendSettings, Precision, UseBackend};
use simattr::embed::{embed_text, embed_tokenized};
use simattr::model::{cache, SentenceModel, Tokenized};
use simattr::net::Encoder;
use simattr::output::provenance::{AttributionSettings, Provenance};
use simattr::output::{files, heatmap, json, summary, tensors};

mod cli;

#[derive(Parser)]
#[command(name = "simattr", version, about = "Explain why a sentence encoder finds two texts similar")]
struct Cli {
    /// Which backend runs the network: `cpu` (fast, multi-threaded), `cpu-ref` (the plain
    /// reference every other backend is tested against), `wgpu` (WGSL shaders on a GPU),
    /// `cuda` (CUDA kernels on an NVIDIA GPU) or `cuda-emu` (the same kernels on the CPU
    /// execution harness: slow, for checking kernels).
    #[arg(long, global = true, default_value = "cpu", value_name = "cpu|cpu-ref|wgpu|cuda|cuda-emu")]
    backend: String,
    /// The GPU: for `--backend wgpu` the adapter by its number in `simattr devices`, for
    /// `--backend cuda` the CUDA device number [default: the system's default adapter; CUDA
    /// device 0].
    #[arg(long, global = true, value_name = "N")]
    device: Option<usize>,
    /// Storage precision: f32 (every backend, the default), f64 (cpu-ref only; matches a
    /// float64 PyTorch run to ~1e-15), f16 (wgpu, where the adapter offers 16-bit shader
    /// floats, cuda and cuda-emu) or bf16 (cuda, cuda-emu); with f16 and bf16 arithmetic stays f32.
    #[arg(long, global = true, value_name = "f32|f64|f16|bf16")]
    precision: Option<String>,
    /// Precision of the primal states on `cpu`: f64 (explain's default; accurate where the
    /// integrand is sharp, e.g. MPNet layer 6) or f32 (embed's default; explain ~1.25× faster).
    #[arg(long, global = true, value_name = "f64|f32")]
    primal: Option<String>,
    /// Worker threads [default: all cores].
    #[arg(long, global = true, value_name = "N")]
    threads: Option<usize>,
    /// Memory the backend's tensors may use at once, e.g. 512M or 4G [default: 2G]; long texts
    /// and many steps are processed in passes that fit.
    #[arg(long, global = true, value_name = "SIZE")]
    max_memory: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args)]
pub(crate) struct ModelArg {
    /// sentence-transformers model folder, or the name of a model in the cache
    /// (all-MiniLM-L6-v2, all-mpnet-base-v2: fetch with `scripts/fetch_model.sh NAME`; cache at
    /// $SIMATTR_CACHE or ~/.cache/simattr) [default: all-MiniLM-L6-v2]
    #[arg(long, value_name = "DIR|NAME")]
    model: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// The GPUs `--backend wgpu` and `--backend cuda` can run on, numbered for `--device`.
    Devices,
    /// Sentence embeddings, as sentence-transformers' `encode` returns them.
    Embed {
        #[command(flatten)]
        model: ModelArg,
        /// The plain mean-pooled vector, without a listed Normalize module.
        #[arg(long)]
        raw: bool,
        /// Also write {"embeddings": [[…], …]} to FILE.
        #[arg(long, value_name = "FILE")]
        json: Option<PathBuf>,
        #[arg(required = true, value_name = "TEXT")]
        texts: Vec<String>,
    },
    /// Cosine similarity of two texts (of the model's `encode` output).
    Similarity {
        #[command(flatten)]
        model: ModelArg,
        a: String,
        b: String,
    },
    /// Token-by-token attribution of the similarity of A and B (integrated Jacobians).
    Explain {
        #[command(flatten)]
        model: ModelArg,
        #[command(flatten)]
        attribution: cli::AttributionArgs,
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
    },
    /// Many pairs from a JSONL, CSV or TSV file (fields `a`, `b`, optional `id`), or a query
    /// against documents (`--query`, `--docs`): one JSON record per pair, each text's
    /// attribution computed once.
    Batch(cli::batch::BatchArgs),
    /// Fine-tune a sentence-transformers model into an exact model: the output token states of
    /// the same-length reference input are subtracted before pooling (e(r) = 0), so its
    /// attributions add up to the score itself. Runs on the CPU.
    Train(cli::train::TrainArgs),
    /// How fast each quadrature rule converges on A and B: the completeness error and each
    /// text's identity error against the number of steps, and how long each took.
    Convergence {
        #[command(flatten)]
        model: ModelArg,
        /// Layer whose input is attributed (0 = embedding output).
        #[arg(long, default_value_t = 0)]
        layer: usize,
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
        a: String,
        b: String,
    },
}

/// `--rules` and `--steps` of `convergence`: comma-separated, none empty or repeated.
fn parse_list<T: std::str::FromStr + PartialEq>(flag: &str, list: &str) -> anyhow::Result<Vec<T>> {
    let mut items = Vec::new();
    for item in list.split(',').map(str::trim) {
        let value = item.parse::<T>().map_err(|_| anyhow::anyhow!("{flag}: `{item}` is not valid in `{list}`"))?;
        if items.contains(&value) {
            anyhow::bail!("{flag}: `{item}` is listed twice");
        }
        items.push(value);
    }
    Ok(items)
}

fn main() -> ExitCode {
    simattr::backend::cpu::keep_freed_memory_for_reuse();
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

pub(crate) fn load_model(arg: &ModelArg) -> anyhow::Result<SentenceModel> {
    let dir = cache::resolve_model(arg.model.as_deref()).map_err(anyhow::Error::msg)?;
    Ok(SentenceModel::load(&dir)?)
}

fn warn_truncated(label: &str, tokenized: &Tokenized, max_len: usize) {
    if let Some(from) = tokenized.truncated_from {
        eprintln!("warning: {label} has {from} tokens; truncated to max_seq_length {max_len}");
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if let Command::Devices = cli.command {
        println!("wgpu (--backend wgpu --device N):");
        let adapters = describe_adapters();
        if adapters.is_empty() {
            println!("no GPU adapter (wgpu found none: install a Vulkan, Metal or DX12 driver)");
        }
        adapters.iter().for_each(|line| println!("{line}"));
        println!("cuda (--backend cuda --device N):");
        match describe_cuda_devices() {
            Ok(devices) if devices.is_empty() => println!("no GPU (the CUDA driver finds none)"),
            Ok(devices) => devices.iter().for_each(|line| println!("{line}")),
            Err(e) => println!("{}", e.to_string().trim_start_matches("CUDA: ")),
        }
        return Ok(ExitCode::SUCCESS);
    }
    if let Command::Train(args) = cli.command {
        if cli.backend != "cpu" || cli.precision.is_some() || cli.primal.is_some() || cli.device.is_some() {
            anyhow::bail!("train runs on the cpu backend in f32 (weight gradients are not on the GPU backends yet); leave out --backend, --precision, --primal and --device");
        }
        return cli::train::run(args, cli.threads);
    }
    let kind: BackendKind = cli.backend.parse()?;
    let precision = cli.precision.as_deref().map(str::parse::<Precision>).transpose()?;
    let max_memory = cli.max_memory.as_deref().map(parse_memory).transpose()?;
    let settings = BackendSettings::new(cli.threads, max_memory)?;
    let mut choice = BackendChoice::new(kind, cli.device, precision, cli.primal.as_deref(), settings)?;
    // Embeddings need no Jacobian, so f32 primal states serve them (and sentence-transformers
    // computes in f32); attributions keep the backend's accurate default unless told otherwise.
    if matches!(cli.command, Command::Embed { .. }) && cli.primal.is_none() && !kind.primal_precisions().is_empty() {
        choice.settings = choice.settings.with_primal(Precision::F32);
    }
    choice.open(RunCommand(cli.command))?
}

/// Runs a command on the backend the options chose.
struct RunCommand(Command);

impl UseBackend for RunCommand {
    type Output = anyhow::Result<ExitCode>;
    fn with<B: Backend + Send + 'static>(self, backend: B) -> Self::Output {
        run_on(&backend, self.0)
    }
}

fn run_on<B: Backend>(backend: &B, command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Embed { model, raw, json: json_path, texts } => {
            if let Some(path) = &json_path {
                files::check_writable(path)?;
            }
            let model = load_model(&model)?;
            let encoder = Encoder::new(backend, &model)?;
            let mut out = json::EmbedJson {
                model: model.path.display().to_string(),
                normalized: !raw && model.normalize,
                embeddings: Vec::new(),
                texts: Vec::new(),
                provenance: Provenance::new(&model, backend),
            };
            let mut tokenized = Vec::with_capacity(texts.len());
            for (n, text) in texts.iter().enumerate() {
                let t = model.tokenizer.encode(text).with_context(|| format!("text {}", n + 1))?;
                warn_truncated(&format!("text {}", n + 1), &t, model.max_seq_length);
                tokenized.push(t);
            }
            out.provenance.truncated = tokenized.iter().any(|t| t.truncated_from.is_some());
            let vectors = embed_tokenized(&encoder, &model, &tokenized, !raw)?;
            for ((text, t), vector) in texts.iter().zip(tokenized).zip(vectors) {
                let shown: Vec<String> = vector.iter().map(|v| format!("{v:.6}")).collect();
                println!("{}", shown.join(" "));
                out.embeddings.push(vector);
                out.texts.push(json::EmbeddingEntryJson {
                    text: text.clone(),
                    tokens: t.tokens,
                    truncated_from: t.truncated_from,
                });
            }
            if let Some(path) = &json_path {
                files::write_atomic(path, &json::to_pretty_bytes(&out))?;
            }
            leave_to_exit((encoder, model));
        }
        Command::Similarity { model, a, b } => {
            let model = load_model(&model)?;
            let encoder = Encoder::new(backend, &model)?;
            let ea = embed_text(&encoder, &model, &a, false).context("text A")?;
            let eb = embed_text(&encoder, &model, &b, false).context("text B")?;
            warn_truncated("text A", &ea.tokenized, model.max_seq_length);
            warn_truncated("text B", &eb.tokenized, model.max_seq_length);
            println!("{:.6}", Similarity::Cos.score(&ea.vector, &eb.vector));
            leave_to_exit((encoder, model));
        }
        Command::Explain {
            model,
            attribution,
            json: json_path,
            png,
            svg,
            html: html_path,
            top,
            jacobians,
            feature_pairs: feature_pairs_path,
            a,
            b,
        } => {
            let cli::Attribution { options, similarity, word_merge } = attribution.parse()?;
            let (layer, steps, quadrature, method, mut mode) =
                (options.layer, options.quadrature.steps(), options.quadrature, options.method, options.mode);
            for path in [&json_path, &png, &svg, &jacobians, &feature_pairs_path].into_iter().flatten() {
                files::check_writable(path)?;
            }
            if let Some(path) = &html_path {
                files::check_writable(path)?;
            }
            let model = load_model(&model)?;
            let encoder = Encoder::new(backend, &model)?;
            let keep_jacobian = jacobians.is_some() || feature_pairs_path.is_some();
            if keep_jacobian && method == Method::Decomposition {
                anyhow::bail!("--jacobians/--feature-pairs: the decomposition baseline takes no Jacobian");
            }
            if keep_jacobian {
                let (h, ta, tb) =
                    (encoder.hidden(), model.tokenizer.encode(&a)?.ids.len(), model.tokenizer.encode(&b)?.ids.len());
                let sizes = [
                    ("--jacobians", jacobians.is_some(), tensors::jacobians_bytes(h, h, ta, tb)),
                    ("--feature-pairs", feature_pairs_path.is_some(), tensors::feature_pairs_bytes(h, ta, tb)),
                ];
                for (flag, _, bytes) in sizes.into_iter().filter(|(_, wanted, _)| *wanted) {
                    if bytes > tensors::MAX_FILE_BYTES {
                        anyhow::bail!(
                            "{flag}: the file would take {bytes} bytes ({ta} and {tb} tokens, width {h}, f64), over the {} limit",
                            tensors::MAX_FILE_BYTES
                        );
                    }
                }
                if mode != Mode::Reverse {
                    eprintln!(
                        "--jacobians/--feature-pairs: computing in reverse mode, which yields the Jacobians row by row"
                    );
                    mode = Mode::Reverse;
                }
            }
            let options = TextOptions { mode, keep_jacobian, ..options };
            let bar = cli::progress_bar("integrating");
            let explanation = explain_pair(&encoder, &model.tokenizer, &a, &b, &options, similarity, &bar);
            bar.finish_and_clear();
            let explanation = explanation?;
            warn_truncated("text A", &explanation.a.tokenized, model.max_seq_length);
            warn_truncated("text B", &explanation.b.tokenized, model.max_seq_length);
            print!("{}", summary::explanation_summary(&explanation, top));
            if let Some(merge) = word_merge {
                print!("{}", summary::word_pairs_summary(&json::WordsJson::new(&a, &b, &explanation, merge), top));
            }
            // Everything is rendered before anything is written, and written as a group: a
            // failure leaves neither file behind.
            let mut outputs: Vec<(PathBuf, Vec<u8>)> = Vec::new();
            // The explain JSON, with the word view merged by `merge` (none: no word view).
            let explain_json = |merge: Option<WordMerge>| {
                let provenance = Provenance::new(&model, backend)
                    .with_attribution(AttributionSettings::new(&options, similarity, merge));
                json::ExplainJson::new(&model, &provenance, &a, &b, &explanation, merge)
            };
            if let Some(path) = &json_path {
                outputs.push((path.clone(), json::to_pretty_bytes(&explain_json(word_merge))));
            }
            if png.is_some() || svg.is_some() {
                let p = &explanation.pair;
                let name = model.path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
                let setting = match method {
                    Method::IntegratedJacobians => format!("layer {layer} {} steps {steps}", quadrature.name()),
                    Method::Decomposition => "decomposition".to_string(),
                };
                let title = format!(
                    "{name} {} {setting}: score {:.4}, sum A {:.4}",
                    p.similarity.name(),
                    p.score,
                    p.attribution_sum
                );
                let (ta, tb) = (&explanation.a.tokenized.tokens, &explanation.b.tokenized.tokens);
                if let Some(path) = &png {
                    let bytes = heatmap::heatmap_png(ta, tb, &p.matrix, &title).map_err(simattr::Error::from)?;
                    outputs.push((path.clone(), bytes));
                }
                if let Some(path) = &svg {
                    let bytes = heatmap::heatmap_svg(ta, tb, &p.matrix, &title).map_err(simattr::Error::from)?;
                    outputs.push((path.clone(), bytes));
                }
            }
            if let Some(path) = &html_path {
                // The report always carries the word view (--words' merge, or sum); --json
                // gets words only with --words.
                let doc = explain_json(Some(word_merge.unwrap_or(WordMerge::Sum)));
                let title = simattr::output::html::pair_title(&a, &b);
                outputs.push((path.clone(), simattr::output::html::explain_page(&doc, &title)));
            }
            let settings = [
                ("model", model.path.display().to_string()),
                ("similarity", explanation.pair.similarity.name().to_string()),
                ("backend", backend.name()),
            ];
            if let Some(path) = &jacobians {
                outputs.push((path.clone(), tensors::jacobians_safetensors(&explanation, &settings)?));
            }
            if let Some(path) = &feature_pairs_path {
                let values = feature_pairs(&explanation.a, &explanation.b, explanation.pair.similarity)
                    .ok_or_else(|| anyhow::anyhow!("--feature-pairs: the Jacobians were not kept"))?;
                outputs.push((path.clone(), tensors::feature_pairs_safetensors(&explanation, &values, &settings)?));
            }
            let group: Vec<(&std::path::Path, &[u8])> =
                outputs.iter().map(|(p, b)| (p.as_path(), b.as_slice())).collect();
            files::write_all(&group)?;
            for (path, _) in &outputs {
                eprintln!("wrote {}", path.display());
            }
            leave_to_exit((encoder, model, explanation));
        }
        // Listed in `run`, before any backend opens.
        Command::Devices => {}
        Command::Convergence { model, layer, rules, steps, similarity, mode, json: json_path, a, b } => {
            let similarity: Similarity = similarity.parse()?;
            let mode: Mode = mode.parse()?;
            let rules: Vec<Rule> = parse_list("--rules", &rules)?;
            let steps: Vec<usize> = parse_list("--steps", &steps)?;
            if let Some(path) = &json_path {
                files::check_writable(path)?;
            }
            let model = load_model(&model)?;
            let encoder = Encoder::new(backend, &model)?;
            let options = TextOptions { mode, ..TextOptions::new(layer, Quadrature::riemann_right(1)?) };
            let bar = cli::progress_bar("converging");
            let rows = convergence(&encoder, &model.tokenizer, &a, &b, &rules, &steps, &options, similarity, &bar);
            bar.finish_and_clear();
            let rows = rows?;
            print!("{}", summary::convergence_table(&rows));
            if let Some(path) = &json_path {
                let truncated = [&a, &b]
                    .iter()
                    .any(|text| model.tokenizer.encode(text).map(|t| t.truncated_from.is_some()).unwrap_or(false));
                let provenance = Provenance::new(&model, backend).with_truncated(truncated);
                let doc = json::ConvergenceJson::new(&model, &provenance, &a, &b, layer, similarity, mode, &rows);
                files::write_atomic(path, &json::to_pretty_bytes(&doc))?;
                eprintln!("wrote {}", path.display());
            }
            leave_to_exit((encoder, model));
        }
        Command::Batch(args) => return cli::batch::run(backend, args),
        Command::Train(_) => unreachable!("train runs before a backend is opened"),
    }
    Ok(ExitCode::SUCCESS)
}

/// The process ends right after: handing hundreds of MB of weights and activations back to the
/// allocator piece by piece would only delay the exit (~0.1 s for MPNet), so the OS takes them.
pub(crate) fn leave_to_exit<T>(big: T) {
    std::mem::forget(big);
}
