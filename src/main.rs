//! The `simattr` command line. This file only parses the arguments and hands each command to
//! its module in `cli/`; what a command computes lives in the library (`simattr::job` for
//! `explain`, `simattr::batch`, `simattr::train`, …).

use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::{Parser, Subcommand};

use simattr::backend::{Backend, BackendChoice, BackendKind, BackendSettings, Precision, UseBackend};

mod cli;

#[derive(Parser)]
#[command(name = "simattr", version, about = "Explain why a sentence encoder finds two texts similar")]
struct Cli {
    /// Which backend runs the network.
    #[arg(long, global = true, value_enum, default_value_t = BackendKind::Cpu)]
    backend: BackendKind,
    /// The GPU: for `--backend wgpu` the adapter by its number in `simattr devices`, for
    /// `--backend cuda` the CUDA device number [default: the system's default adapter; CUDA
    /// device 0].
    #[arg(long, global = true, value_name = "N")]
    device: Option<usize>,
    /// Storage precision: f32 (every backend, the default), f64 (cpu-ref only; matches a
    /// float64 PyTorch run to ~1e-15), f16 (wgpu, where the adapter offers 16-bit shader
    /// floats, cuda and cuda-emu) or bf16 (cuda, cuda-emu); with f16 and bf16 arithmetic stays f32.
    #[arg(long, global = true, value_enum)]
    precision: Option<Precision>,
    /// Precision of the primal states on `cpu`: f64 (explain's default; accurate where the
    /// integrand is sharp, e.g. MPNet layer 6) or f32 (embed's default; explain ~1.25× faster).
    #[arg(long, global = true, value_enum)]
    primal: Option<cli::Primal>,
    /// Worker threads [default: all cores].
    #[arg(long, global = true, value_name = "N")]
    threads: Option<usize>,
    /// Memory the backend's tensors may use at once, e.g. 512M or 4G [default: 2G]; long texts
    /// and many steps are processed in passes that fit.
    #[arg(long, global = true, value_name = "SIZE", value_parser = cli::memory_size)]
    max_memory: Option<usize>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Token-by-token attribution of the similarity of A and B (integrated Jacobians).
    Explain(cli::explain::ExplainArgs),
    /// Many pairs from a JSONL, CSV or TSV file (fields `a`, `b`, optional `id`), or a query
    /// against documents (`--query`, `--docs`): one JSON record per pair, each text's
    /// attribution computed once.
    Batch(cli::batch::BatchArgs),
    /// Sentence embeddings, as sentence-transformers' `encode` returns them.
    Embed(cli::embed::EmbedArgs),
    /// Cosine similarity of two texts (of the model's `encode` output).
    Similarity(cli::embed::SimilarityArgs),
    /// How fast each quadrature rule converges on A and B: the completeness error and each
    /// text's identity error against the number of steps, and how long each took.
    Convergence(cli::convergence::ConvergenceArgs),
    /// Fine-tune a sentence-transformers model into an exact model: the output token states of
    /// the same-length reference input are subtracted before pooling (e(r) = 0), so its
    /// attributions add up to the score itself. Runs on the CPU.
    Train(cli::train::TrainArgs),
    /// The GPUs `--backend wgpu` and `--backend cuda` can run on, numbered for `--device`.
    Devices,
    /// A shell completion script for simattr, on stdout (e.g. `simattr completions bash >
    /// ~/.local/share/bash-completion/completions/simattr`).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

fn main() -> ExitCode {
    simattr::backend::cpu::keep_freed_memory_for_reuse();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            // A bad value is bad input like any other (status 1); a malformed command line
            // keeps clap's usage status (2), and --help and --version succeed.
            let code = match e.kind() {
                ErrorKind::InvalidValue | ErrorKind::ValueValidation => 1,
                _ => e.exit_code(),
            };
            return ExitCode::from(code.clamp(0, 255) as u8);
        }
    };
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Devices => return Ok(cli::devices()),
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut <Cli as clap::CommandFactory>::command(),
                "simattr",
                &mut std::io::stdout(),
            );
            return Ok(ExitCode::SUCCESS);
        }
        Command::Train(args) => {
            let gpu_flags = cli.backend != BackendKind::Cpu || cli.device.is_some();
            if gpu_flags || cli.precision.is_some() || cli.primal.is_some() {
                anyhow::bail!("train runs on the cpu backend in f32 (weight gradients are not on the GPU backends yet); leave out --backend, --precision, --primal and --device");
            }
            return cli::train::run(args, cli.threads);
        }
        _ => {}
    }
    let settings = BackendSettings::new(cli.threads, cli.max_memory)?;
    let primal = cli.primal.map(Precision::from);
    let mut choice = BackendChoice::new(cli.backend, cli.device, cli.precision, primal, settings)?;
    // Embeddings need no Jacobian, so f32 primal states serve them (and sentence-transformers
    // computes in f32); attributions keep the backend's accurate default unless told otherwise.
    let embeds = matches!(cli.command, Command::Embed(_));
    if embeds && primal.is_none() && !cli.backend.primal_precisions().is_empty() {
        choice.settings = choice.settings.with_primal(Precision::F32);
    }
    choice.open(RunCommand(cli.command))?
}

/// Runs a command on the backend the options chose.
struct RunCommand(Command);

impl UseBackend for RunCommand {
    type Output = anyhow::Result<ExitCode>;
    fn with<B: Backend + Send + 'static>(self, backend: B) -> Self::Output {
        match self.0 {
            Command::Explain(args) => cli::explain::run(&backend, args),
            Command::Batch(args) => cli::batch::run(&backend, args),
            Command::Embed(args) => cli::embed::embed(&backend, args),
            Command::Similarity(args) => cli::embed::similarity(&backend, args),
            Command::Convergence(args) => cli::convergence::run(&backend, args),
            Command::Train(_) | Command::Devices | Command::Completions { .. } => {
                unreachable!("run handles these before a backend opens")
            }
        }
    }
}
