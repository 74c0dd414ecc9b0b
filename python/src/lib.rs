//! `simattr._native`: the engine for Python. A thin layer over `simattr::session`: Python
//! strings and NumPy arrays in and out, the GIL released while the engine computes, engine
//! errors raised as Python exceptions carrying the engine's message. The Python package
//! around it (`simattr/`) makes the user-facing API of these pieces.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use numpy::{IntoPyArray, PyArray2, PyArrayMethods};
use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyFileNotFoundError, PyKeyboardInterrupt, PyValueError};
use pyo3::prelude::*;

use simattr::attribution::Progress;
use simattr::backend::{parse_memory, BackendChoice, BackendKind, BackendSettings, Precision};
use simattr::batch::{read_items, Format, Item};
use simattr::model::cache::resolve_model as resolve_model_dir;
use simattr::output::html;
use simattr::session::{open_session, Session as EngineSession, SessionOptions};

create_exception!(_native, SimattrError, PyException, "An error of the simattr engine.");

/// The engine's error as a Python exception: bad arguments are `ValueError`s (named by their
/// keyword), missing files `FileNotFoundError`s, the rest `SimattrError`.
fn to_py(error: simattr::Error) -> PyErr {
    match error {
        simattr::Error::Argument { argument, message } => {
            PyValueError::new_err(format!("invalid argument {}: {message}", keyword(argument)))
        }
        missing @ simattr::Error::MissingFile { .. } => PyFileNotFoundError::new_err(missing.to_string()),
        simattr::Error::Io { path, source } if source.kind() == std::io::ErrorKind::NotFound => {
            PyFileNotFoundError::new_err(format!("cannot read {}: {source}", path.display()))
        }
        other => SimattrError::new_err(other.to_string()),
    }
}

/// `--max-memory` as Python spells the keyword: `max_memory`.
fn keyword(argument: &str) -> String {
    match argument.strip_prefix("--") {
        Some(flag) => flag.replace('-', "_"),
        None => argument.to_string(),
    }
}

/// A model folder, or the name of a model in simattr's cache (`None`: the default model).
#[pyfunction]
#[pyo3(signature = (model=None))]
fn resolve_model(model: Option<PathBuf>) -> PyResult<String> {
    resolve_model_dir(model.as_deref())
        .map(|dir| dir.display().to_string())
        .map_err(|message| PyFileNotFoundError::new_err(message.replacen("--model", "model", 1)))
}

/// One pair-file item as Python sees it: `(line, id, a, b, error)`.
type PyItem = (usize, String, Option<String>, Option<String>, Option<String>);

/// The pairs of a `.jsonl`, `.ndjson`, `.csv` or `.tsv` file exactly as `simattr batch` reads
/// them: `(line, id, a, b, error)`, `error` set (and `a`, `b` None) for a bad line.
#[pyfunction]
fn read_pairs(py: Python<'_>, path: PathBuf) -> PyResult<Vec<PyItem>> {
    let items = py.detach(|| {
        let format = Format::of_path(&path, false)?;
        read_items(&path, format, &["a", "b"])
    });
    Ok(items.map_err(to_py)?.into_iter().map(to_py_item).collect())
}

fn to_py_item(item: Item) -> PyItem {
    match item {
        Item::Row { line, id, mut fields } => {
            let b = fields.pop();
            let a = fields.pop();
            (line, id, a, b, None)
        }
        Item::Bad { line, id, message } => (line, id, None, None, Some(message)),
    }
}

fn from_py_item((line, id, a, b, error): PyItem) -> Item {
    match (a, b, error) {
        (Some(a), Some(b), None) => Item::Row { line, id, fields: vec![a, b] },
        (_, _, Some(message)) => Item::Bad { line, id, message },
        _ => Item::Bad { line, id, message: format!("line {line}: a pair needs both texts, a and b") },
    }
}

/// The interactive HTML page `simattr explain --html` writes, for an explain JSON document.
#[pyfunction]
fn report_html(explain_json: &str, title: &str) -> PyResult<String> {
    let record: serde_json::Value = serde_json::from_str(explain_json)
        .map_err(|e| PyValueError::new_err(format!("report_html: not an explain JSON document: {e}")))?;
    String::from_utf8(html::explain_page(&record, title))
        .map_err(|e| SimattrError::new_err(format!("report_html: the page is not UTF-8: {e}")))
}

/// The title `explain --html` gives the page of a pair.
#[pyfunction]
fn pair_title(a: &str, b: &str) -> String {
    html::pair_title(a, b)
}

/// A model loaded on a backend, with its attribution settings and its per-text cache.
#[pyclass(module = "simattr._native")]
struct Session {
    engine: Mutex<Box<dyn EngineSession>>,
}

impl Session {
    fn engine(&self) -> MutexGuard<'_, Box<dyn EngineSession>> {
        // A panic inside the engine leaves nothing half-updated that a later call reads.
        self.engine.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[pymethods]
impl Session {
    #[new]
    #[pyo3(signature = (
        model=None, *, backend="cpu", device=None, precision=None, primal=None, threads=None,
        max_memory=None, layer=None, steps=50, rule="riemann-right", method="integrated-jacobians",
        similarity="cos", mode="auto", words=true, word_merge="sum", truncate=true, cache_dir=None,
        cache_memory="1G", prompt_a=None, prompt_b=None, truncate_dim=None
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        model: Option<PathBuf>,
        backend: &str,
        device: Option<usize>,
        precision: Option<&str>,
        primal: Option<&str>,
        threads: Option<usize>,
        max_memory: Option<&str>,
        layer: Option<usize>,
        steps: usize,
        rule: &str,
        method: &str,
        similarity: &str,
        mode: &str,
        words: bool,
        word_merge: &str,
        truncate: bool,
        cache_dir: Option<PathBuf>,
        cache_memory: &str,
        prompt_a: Option<String>,
        prompt_b: Option<String>,
        truncate_dim: Option<usize>,
    ) -> PyResult<Self> {
        let kind: BackendKind = backend.parse().map_err(to_py)?;
        let precision = precision.map(str::parse::<Precision>).transpose().map_err(to_py)?;
        let max_memory = max_memory.map(parse_memory).transpose().map_err(to_py)?;
        let settings = BackendSettings::new(threads, max_memory).map_err(to_py)?;
        let primal = primal
            .map(|p| match p {
                "f64" => Ok(Precision::F64),
                "f32" => Ok(Precision::F32),
                other => Err(simattr::Error::argument("primal", format!("`{other}` (expected f64 or f32)"))),
            })
            .transpose()
            .map_err(to_py)?;
        let choice = BackendChoice::new(kind, device, precision, primal, settings).map_err(to_py)?;
        let mut options =
            SessionOptions::parse(layer, steps, rule, method, similarity, mode, Some(word_merge)).map_err(to_py)?;
        if !words {
            options.word_merge = None;
        }
        options.truncate = truncate;
        options.cache_dir = cache_dir;
        options.prompts = [prompt_a, prompt_b];
        options.truncate_dim = truncate_dim;
        options.cache_memory = parse_memory(cache_memory).map_err(|_| {
            PyValueError::new_err(format!(
                "invalid argument cache_memory: `{cache_memory}` is not a size (examples: 512M, 2G)"
            ))
        })?;
        let dir = resolve_model(model)?;
        let engine = py.detach(|| open_session(Path::new(&dir), &choice, options)).map_err(to_py)?;
        Ok(Session { engine: Mutex::new(engine) })
    }

    /// `(json, attributions)`: the JSON text `simattr explain --json` writes for the pair, and
    /// the attribution matrix `[len(tokens_a), len(tokens_b)]` (float64). `progress(done,
    /// total)` is called now and then while the texts are integrated; Ctrl-C stops the work
    /// within a layer and raises KeyboardInterrupt.
    #[pyo3(signature = (a, b, progress=None))]
    fn explain<'py>(
        &self,
        py: Python<'py>,
        a: &str,
        b: &str,
        progress: Option<Py<PyAny>>,
    ) -> PyResult<(String, Bound<'py, PyArray2<f64>>)> {
        let reporter = CallbackProgress::new(progress);
        let explained = py.detach(|| self.engine().explain(a, b, &[], &reporter)).map_err(|e| reporter.error(e))?;
        reporter.finish();
        let text = String::from_utf8(simattr::output::json::to_pretty_bytes(&explained.json))
            .map_err(|e| SimattrError::new_err(format!("the explain JSON is not UTF-8: {e}")))?;
        let pair = explained.explanation.pair;
        let matrix = pair.matrix.into_pyarray(py).reshape([pair.rows, pair.cols])?;
        Ok((text, matrix))
    }

    /// For each `(line, id, a, b, error)` item, the JSON line (without its newline) that
    /// `simattr batch` writes for it.
    fn batch_records(&self, py: Python<'_>, items: Vec<PyItem>) -> PyResult<Vec<String>> {
        let items: Vec<Item> = items.into_iter().map(from_py_item).collect();
        let lines = py.detach(|| {
            let mut engine = self.engine();
            items.iter().map(|item| engine.explain_item(item).to_line()).collect::<simattr::Result<Vec<_>>>()
        });
        lines
            .map_err(to_py)?
            .into_iter()
            .map(|line| {
                String::from_utf8(line).map_err(|e| SimattrError::new_err(format!("a record is not UTF-8: {e}")))
            })
            .collect()
    }

    /// Sentence embeddings `[len(texts), hidden]` (float64); `normalize`: apply the model's
    /// Normalize module if it lists one (as sentence-transformers' `encode`).
    #[pyo3(signature = (texts, normalize=true))]
    fn embed<'py>(&self, py: Python<'py>, texts: Vec<String>, normalize: bool) -> PyResult<Bound<'py, PyArray2<f64>>> {
        let hidden = self.engine().model().config.hidden_size;
        let vectors = py.detach(|| self.engine().embed(&texts, normalize)).map_err(to_py)?;
        let flat: Vec<f64> = vectors.into_iter().flatten().collect();
        flat.into_pyarray(py).reshape([texts.len(), hidden])
    }

    /// `(document index, score)` for every document, best first (ties keep their order).
    fn rank(&self, py: Python<'_>, query: &str, documents: Vec<String>) -> PyResult<Vec<(usize, f64)>> {
        let ranked = py.detach(|| self.engine().rank(query, &documents)).map_err(to_py)?;
        Ok(ranked.into_iter().map(|r| (r.document, r.score)).collect())
    }

    /// How the texts' attributions were found: computed, or reused from memory or the disk.
    fn cache_stats(&self) -> std::collections::HashMap<&'static str, usize> {
        let stats = self.engine().cache_stats();
        std::collections::HashMap::from([
            ("computed", stats.computed),
            ("memory_hits", stats.memory_hits),
            ("disk_hits", stats.disk_hits),
            ("disk_unreadable", stats.disk_unreadable),
        ])
    }

    /// The model, the engine and the settings, as a JSON object.
    #[getter]
    fn provenance(&self) -> PyResult<String> {
        serde_json::to_string(self.engine().provenance())
            .map_err(|e| SimattrError::new_err(format!("the provenance does not serialize: {e}")))
    }

    #[getter]
    fn model_path(&self) -> String {
        self.engine().model().path.display().to_string()
    }

    #[getter]
    fn hidden_size(&self) -> usize {
        self.engine().model().config.hidden_size
    }

    #[getter]
    fn max_seq_length(&self) -> usize {
        self.engine().model().max_seq_length
    }
}

/// The engine's progress, passed to a Python callable `(done, total)`, and Python's signals
/// (Ctrl-C), both looked at no more than ten times a second (each look takes the GIL back).
struct CallbackProgress {
    callback: Option<Py<PyAny>>,
    total: AtomicU64,
    done: AtomicU64,
    last_look: Mutex<Option<Instant>>,
    /// What a signal handler raised (KeyboardInterrupt): the engine stops at its next layer and
    /// the call raises it.
    interruption: Mutex<Option<PyErr>>,
}

const LOOK_INTERVAL: Duration = Duration::from_millis(100);

impl CallbackProgress {
    fn new(callback: Option<Py<PyAny>>) -> Self {
        CallbackProgress {
            callback,
            total: AtomicU64::new(0),
            done: AtomicU64::new(0),
            last_look: Mutex::new(None),
            interruption: Mutex::new(None),
        }
    }

    fn look(&self, force: bool) {
        let mut last = self.last_look.lock().unwrap_or_else(PoisonError::into_inner);
        if !force && last.is_some_and(|at| at.elapsed() < LOOK_INTERVAL) {
            return;
        }
        *last = Some(Instant::now());
        let (done, total) = (self.done.load(Ordering::Relaxed), self.total.load(Ordering::Relaxed));
        Python::attach(|py| {
            if let Err(raised) = py.check_signals() {
                self.interruption.lock().unwrap_or_else(PoisonError::into_inner).get_or_insert(raised);
            }
            if let Some(callback) = &self.callback {
                // A failing callback (a closed notebook widget) must not fail the explanation.
                if let Err(error) = callback.call1(py, (done, total)) {
                    error.write_unraisable(py, None);
                }
            }
        });
    }

    /// The last report, with everything done.
    fn finish(&self) {
        self.look(true);
    }

    /// The engine's error as a Python exception: an interruption raises what the signal
    /// handler raised.
    fn error(&self, error: simattr::Error) -> PyErr {
        match error {
            simattr::Error::Interrupted => self
                .interruption
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take()
                .unwrap_or_else(|| PyKeyboardInterrupt::new_err("interrupted")),
            other => to_py(other),
        }
    }
}

impl Progress for CallbackProgress {
    fn add_work(&self, units: u64) {
        self.total.fetch_add(units, Ordering::Relaxed);
        self.look(false);
    }

    fn advance(&self, units: u64) {
        self.done.fetch_add(units, Ordering::Relaxed);
        self.look(false);
    }

    fn interrupted(&self) -> bool {
        self.interruption.lock().unwrap_or_else(PoisonError::into_inner).is_some()
    }
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("SimattrError", m.py().get_type::<SimattrError>())?;
    m.add_class::<Session>()?;
    m.add_function(wrap_pyfunction!(resolve_model, m)?)?;
    m.add_function(wrap_pyfunction!(read_pairs, m)?)?;
    m.add_function(wrap_pyfunction!(report_html, m)?)?;
    m.add_function(wrap_pyfunction!(pair_title, m)?)?;
    Ok(())
}
