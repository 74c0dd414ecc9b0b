//! What only `--backend cuda-emu` has: the CUDA kernels run by the CPU execution harness from
//! the command line, in each storage precision the kernels are compiled for. The op-by-op and
//! golden tests are the shared suite's (`tests/backends`, `cuda_emu_f32`); compiling the same
//! kernels for GPUs is `tests/cuda_kernels.rs`.

use crate::common;

use simattr::backend::cuda::CudaEmuBackend;
use simattr::backend::{BackendSettings, Precision, Storage};

use common::device_cli::{self, simattr};
use common::{golden, matrix, max_abs, max_abs_diff, minilm_dir, tiny_model_dir};

#[test]
fn explain_on_cuda_emu_gives_the_golden_matrix() {
    device_cli::explain_gives_the_golden_matrix("cuda-emu");
}

/// The real model from the command line: `explain --backend cuda-emu` on all-MiniLM-L6-v2
/// writes the PyTorch golden matrix of a pair at layer 5 and 10 steps within 1e-5 of max|A|.
#[test]
fn explain_on_cuda_emu_gives_the_minilm_golden() {
    let golden = golden("all-MiniLM-L6-v2.json");
    let case = golden["attributions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["layer"] == 5 && c["similarity"] == "cos")
        .expect("a MiniLM golden case at layer 5")
        .clone();
    let dir = tempfile::tempdir().unwrap();
    let json_path = dir.path().join("minilm.json");
    let (steps, model) = (case["steps"].to_string(), minilm_dir());
    let args = ["--backend", "cuda-emu", "explain", "--model", model.to_str().unwrap(), "--layer", "5"];
    let tail = ["--steps", &steps, "--json", json_path.to_str().unwrap()];
    let texts = [case["text_a"].as_str().unwrap(), case["text_b"].as_str().unwrap()];
    let out = simattr(&[&args[..], &tail, &texts].concat());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let doc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
    let (got, want) = (matrix(&doc["attributions"]).concat(), matrix(&case["attributions"]).concat());
    let err = max_abs_diff(&got, &want) / max_abs(&want);
    assert!(err <= 1e-5, "max |ΔA| / max|A| = {err:.2e}");
}

/// f16 storage (the harness's own f16 type, rounded to nearest even as the device's
/// conversions round) stays within 1e-2 of the goldens' largest value.
#[test]
fn f16_storage_stays_close_to_the_goldens() {
    let backend = CudaEmuBackend::emulated(BackendSettings::default(), Precision::F16).expect("the CUDA harness");
    assert_eq!(backend.precision(), Precision::F16);
    device_cli::half_storage_stays_close(&backend, "cuda-emu", 5e-2, 1e-2);
}

/// bf16 keeps f32's range with 8 bits of mantissa (f16 has 11): its rounding is 8× coarser,
/// and so is the tolerance.
#[test]
fn bf16_storage_stays_close_to_the_goldens() {
    let backend = CudaEmuBackend::emulated(BackendSettings::default(), Precision::Bf16).expect("the CUDA harness");
    assert_eq!(backend.precision(), Precision::Bf16);
    device_cli::half_storage_stays_close(&backend, "cuda-emu", 2e-1, 8e-2);
}

/// cuda-emu stores f32, f16 or bf16 and nothing else; `--device` is wgpu's.
#[test]
fn unsupported_settings_are_clear_errors() {
    let model = tiny_model_dir();
    let m = model.to_str().unwrap();
    let out = simattr(&["--backend", "cuda-emu", "--precision", "f64", "embed", "--model", m, "Hi."]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("--precision") && stderr.contains("bf16"), "{stderr}");
    let out = simattr(&["--backend", "cuda-emu", "--device", "0", "embed", "--model", m, "Hi."]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("--device"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
