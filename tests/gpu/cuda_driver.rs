//! `--backend cuda` end to end without a GPU: the CLI's real CUDA backend (cudarc's driver
//! calls, NVRTC's cubins, device memory, launches, passes sized under free device memory)
//! against the emulated driver `kernels/emu/libcuda.rs`, a `libcuda.so` that runs each
//! module's kernels on the CPU harness. It is put in front of the CLI with `LD_LIBRARY_PATH`,
//! and it is strict where a GPU is (the context current on the calling thread, copies and
//! kernel arguments within live allocations, capped memory, a cubin only for its own
//! architecture), so a mistake in the launch layer fails here instead of on the first GPU.
//! The shared suite runs the same backend on the same driver op by op (`tests/backends`,
//! `cuda_f32`); this file is what only the command line shows.

use crate::common;

use std::process::Output;

use serde_json::Value;

use common::device_cli::{explain_gives_the_golden_matrix_in, explain_in, simattr_in};
use common::emulated_driver::library;
use common::{golden_case, matrix, max_abs, max_abs_diff, tiny_model_dir};

/// The emulated driver for one test: its folder on the library path, its settings, and the
/// report it writes when the CLI exits.
struct EmulatedDriver {
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
}

impl EmulatedDriver {
    /// The driver with `settings` (`MEMORY`, `ARCH`, `DEVICES`: `SIMATTR_EMU_DRIVER_*`).
    fn new(settings: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let library = library();
        // cudarc opens `libcuda.so` first; NVRTC opens `libcuda.so.1`.
        for name in ["libcuda.so", "libcuda.so.1"] {
            std::os::unix::fs::symlink(&library, dir.path().join(name)).unwrap();
        }
        let mut env = vec![
            ("LD_LIBRARY_PATH".to_string(), dir.path().display().to_string()),
            ("SIMATTR_EMU_DRIVER_REPORT".to_string(), dir.path().join("report.json").display().to_string()),
        ];
        env.extend(settings.iter().map(|(key, value)| (format!("SIMATTR_EMU_DRIVER_{key}"), value.to_string())));
        EmulatedDriver { dir, env }
    }

    fn with(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    fn run(&self, args: &[&str]) -> Output {
        simattr_in(&self.env, args)
    }

    /// What the driver saw in the last run: peak and live bytes, allocations, launches, the
    /// modules loaded.
    fn report(&self) -> Value {
        let path = self.dir.path().join("report.json");
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        serde_json::from_str(&text).unwrap()
    }

    fn explain(&self, backend: &str, precision: &str, extra: &[&str], texts: [&str; 2]) -> (Vec<f64>, Value) {
        explain_in(&self.env, backend, precision, extra, texts)
    }
}

const TEXTS: [&str; 2] = ["A man is playing a guitar.", "Hi."];
/// Long enough that one direction of one step needs far more than a few kilobytes.
const LONG: &str = "The quick brown fox jumps over the lazy dog while the old farmer, who has seen many \
                    summers come and go, watches from the porch and drinks his coffee slowly.";

fn number(value: &Value) -> u64 {
    value.as_u64().unwrap_or_else(|| panic!("{value} is not a count"))
}

fn assert_clean_failure(out: &Output, needles: &[&str]) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "it succeeded: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    for needle in needles {
        assert!(stderr.contains(needle), "`{needle}` is not in: {stderr}");
    }
    stderr
}

/// Both modes give the golden matrix, and every family was loaded as a cubin for the
/// device's own architecture, storing f32.
#[test]
fn cuda_gives_the_golden_matrix_through_the_driver() {
    let driver = EmulatedDriver::new(&[("ARCH", "86")]);
    explain_gives_the_golden_matrix_in(&driver.env, "cuda");
    let report = driver.report();
    let modules = report["modules"].as_array().unwrap();
    let mut families: Vec<&str> = modules.iter().map(|m| m["family"].as_str().unwrap()).collect();
    families.sort();
    assert_eq!(families, ["attention", "elementwise", "gelu", "layer_norm", "matmul", "pooling"]);
    for module in modules {
        assert_eq!(
            (&module["image"], &module["arch"], &module["storage"]),
            (&"cubin".into(), &86.into(), &"f32".into())
        );
    }
    assert!(number(&report["launches"]) > 100, "{report}");
    assert!(number(&report["peak_bytes"]) <= number(&report["device_memory"]), "{report}");
}

/// A device without memory pools (no stream-ordered allocator) gets plain allocations, and
/// the same matrix.
#[test]
fn a_device_without_memory_pools_allocates_plainly() {
    let driver = EmulatedDriver::new(&[("POOLS", "0")]);
    let (got, _) = driver.explain("cuda", "f32", &[], TEXTS);
    let report = driver.report();
    assert!(number(&report["allocations"]) > 0 && number(&report["pooled_allocations"]) == 0, "{report}");
    let pooled = EmulatedDriver::new(&[]);
    let (want, _) = pooled.explain("cuda", "f32", &[], TEXTS);
    let report = pooled.report();
    assert_eq!(number(&report["pooled_allocations"]), number(&report["allocations"]), "{report}");
    assert_eq!(max_abs_diff(&got, &want), 0.0);
}

/// The driver path only moves data: in each storage precision its matrix is bit for bit the
/// harness's (`--backend cuda-emu`, the same kernels called directly), so uploads, 16-bit
/// encoding, buffer sizes and kernel arguments are all as the harness has them.
#[test]
fn every_precision_matches_cuda_emu_bit_for_bit() {
    let driver = EmulatedDriver::new(&[]);
    for precision in ["f32", "f16", "bf16"] {
        for mode in ["forward", "reverse"] {
            let extra = ["--mode", mode, "--steps", "12"];
            let (got, doc) = driver.explain("cuda", precision, &extra, TEXTS);
            assert!(doc["backend"].as_str().unwrap().contains("sm_80"), "{}", doc["backend"]);
            let (want, _) = driver.explain("cuda-emu", precision, &extra, TEXTS);
            assert_eq!(max_abs_diff(&got, &want), 0.0, "{precision} {mode}");
        }
        let report = driver.report();
        assert!(report["modules"].as_array().unwrap().iter().all(|m| m["storage"] == precision), "{report}");
    }
}

/// Passes are sized under the device's free memory when they are planned, after the weights
/// are resident: with a device only slightly larger than the weights the explanation still
/// runs, within the device, in more passes, to the same matrix. (Sizing from the memory free
/// when the device was opened ran out of memory here.)
#[test]
fn passes_fit_in_what_the_device_has_free() {
    let roomy = EmulatedDriver::new(&[]);
    let extra = ["--steps", "20"];
    let (want, _) = roomy.explain("cuda", "f32", &extra, TEXTS);
    let report = roomy.report();
    let weights = number(&report["live_bytes"]);
    let launches = number(&report["launches"]);

    let memory = (weights * 3 / 2).to_string();
    let tight = EmulatedDriver::new(&[("MEMORY", &memory)]);
    let (got, _) = tight.explain("cuda", "f32", &extra, TEXTS);
    let report = tight.report();
    assert!(number(&report["peak_bytes"]) <= number(&report["device_memory"]), "{report}");
    assert!(number(&report["launches"]) > 2 * launches, "no more passes than with room: {report}");
    let err = max_abs_diff(&got, &want) / max_abs(&want);
    assert!(err <= 1e-6, "max |ΔA| / max|A| = {err:.2e}");
}

/// A device whose free memory cannot hold one direction of one step, and one that cannot hold
/// the weights: each a clear error naming what to change, nothing written.
#[test]
fn too_little_device_memory_is_a_clear_error() {
    let roomy = EmulatedDriver::new(&[]);
    let (_, _) = roomy.explain("cuda", "f32", &[], TEXTS);
    let weights = number(&roomy.report()["live_bytes"]);
    let model = tiny_model_dir();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("out.json");
    let args = ["--backend", "cuda", "explain", "--model", model.to_str().unwrap(), "--json", json.to_str().unwrap()];

    let memory = (weights + 40_000).to_string();
    let out = EmulatedDriver::new(&[("MEMORY", &memory)]).run(&[&args[..], &[LONG, "Hi."]].concat());
    assert_clean_failure(&out, &["--max-memory", "too small", "free on the device", "needs"]);
    assert!(!json.exists());

    let memory = (weights / 2).to_string();
    let out = EmulatedDriver::new(&[("MEMORY", &memory)]).run(&[&args[..], &TEXTS].concat());
    assert_clean_failure(&out, &["CUDA: out of memory on simattr emulated GPU", "--max-memory", "--precision"]);
    assert!(!json.exists());
}

/// A GPU newer than this NVRTC gets PTX for the newest architecture NVRTC knows, which its
/// driver compiles; the matrix is the golden one.
#[test]
fn a_gpu_newer_than_nvrtc_gets_ptx() {
    let known = simattr::backend::cuda::nvrtc::supported_architectures().unwrap();
    let newest = *known.last().unwrap();
    let driver = EmulatedDriver::new(&[("ARCH", "250")]);
    let case = golden_case(2, 20, "cos");
    let texts = [case["text_a"].as_str().unwrap(), case["text_b"].as_str().unwrap()];
    let (got, doc) = driver.explain("cuda", "f32", &["--layer", "2", "--steps", "20"], texts);
    let want = matrix(&case["attributions"]).concat();
    assert!(max_abs_diff(&got, &want) / max_abs(&want) <= 1e-5);
    let backend = doc["backend"].as_str().unwrap();
    assert!(backend.contains(&format!("sm_250 through compute_{newest} PTX")), "{backend}");
    let report = driver.report();
    for module in report["modules"].as_array().unwrap() {
        assert_eq!((&module["image"], &module["arch"]), (&"ptx".into(), &newest.into()), "{report}");
    }
}

/// What can go wrong before the first kernel: a GPU older than NVRTC compiles for, no GPU
/// behind the driver, a `--device` beyond the count, no NVRTC. Each is a clear error.
#[test]
fn setup_failures_are_clear_errors() {
    let model = tiny_model_dir();
    let embed = |driver: &EmulatedDriver, device: &str| {
        driver.run(&["--backend", "cuda", "--device", device, "embed", "--model", model.to_str().unwrap(), "Hi."])
    };
    let out = embed(&EmulatedDriver::new(&[("ARCH", "30")]), "0");
    assert_clean_failure(&out, &["sm_30", "older than every architecture NVRTC compiles for"]);

    let out = embed(&EmulatedDriver::new(&[("DEVICES", "0")]), "0");
    assert_clean_failure(&out, &["finds no GPU"]);

    let two = EmulatedDriver::new(&[("DEVICES", "2"), ("ARCH", "89"), ("MEMORY", "3221225472")]);
    let out = two.run(&["devices"]);
    let listed = String::from_utf8_lossy(&out.stdout).to_string();
    let cuda = listed.split("cuda (--backend cuda --device N):\n").nth(1).unwrap_or_else(|| panic!("{listed}"));
    let name = "simattr emulated GPU (CUDA kernels on the CPU harness)";
    assert_eq!(cuda, format!("0: {name} (sm_89, 3.0 GiB)\n1: {name} (sm_89, 3.0 GiB)\n"), "{listed}");
    let out = embed(&two, "1");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let emu = two.run(&["--backend", "cuda-emu", "embed", "--model", model.to_str().unwrap(), "Hi."]);
    assert!(!out.stdout.is_empty() && out.stdout == emu.stdout, "device 1's embedding is not the harness's");
    assert_clean_failure(&embed(&two, "2"), &["--device", "2 is not a CUDA device here; there are 2"]);

    let empty = tempfile::tempdir().unwrap();
    let without_nvrtc = EmulatedDriver::new(&[]).with("SIMATTR_CUDA_TOOLS", empty.path().to_str().unwrap());
    assert_clean_failure(&embed(&without_nvrtc, "0"), &["NVRTC", "scripts/fetch_cuda_tools.sh"]);
}
