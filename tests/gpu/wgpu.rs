//! What only the wgpu backend has: adapter limits, the adapter choice on the command line, and
//! the explain command end to end on it. The op-by-op and golden tests are the shared suite's
//! (`tests/backends`, `wgpu_f32`).

use crate::common;

use simattr::backend::wgpu::WgpuBackend;
use simattr::backend::{BackendSettings, Precision, Storage};

use common::device_cli::{self, simattr};
use common::golden_check::{check_attributions, check_embeddings};
use common::{fixture_dir, golden, tiny_model_dir};

/// An adapter that binds at most 32768 values per tensor (128 KiB, where lavapipe binds
/// 128 MiB) and keeps tables of more than 16384 values on the host: the passes are cut to fit
/// the binding, and tiny XLM-RoBERTa's 578-row word table (18496 values) is gathered on the host,
/// as the real 250k-row table is on every adapter. The golden embeddings and attributions come
/// out all the same.
#[test]
fn tables_and_passes_beyond_one_binding_give_the_goldens() {
    let (binding, table) = (32_768, 16_384);
    let backend = WgpuBackend::with_caps(BackendSettings::default(), None, binding, table).expect("a wgpu adapter");
    assert_eq!(backend.max_tensor_values(), Some(binding));
    let rows = backend.rows_that_fit(320);
    assert!(rows * 320 <= binding, "{rows} rows of 320 values exceed one binding");
    let fixture = "tiny-xlm-roberta";
    let golden = golden(&format!("{fixture}.json"));
    check_embeddings(&backend, &fixture_dir(fixture), &golden, 1e-5);
    let checked = check_attributions(&backend, &fixture_dir(fixture), &golden, 1e-5, |c| c["layer"] == 2);
    assert!(checked >= 12, "only {checked} golden cases");
}

/// `simattr devices` lists this machine's adapters, numbered; `--device` takes those numbers,
/// names the choices when given one that is not there, and belongs to `--backend wgpu` only.
#[test]
fn devices_are_listed_and_chosen_by_number() {
    let out = simattr(&["devices"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let listed = String::from_utf8_lossy(&out.stdout).to_string();
    // wgpu's section comes first; the CUDA devices, numbered apart, follow under their own heading.
    let wgpu = listed.split("cuda (--backend cuda --device N):").next().unwrap();
    assert!(wgpu.starts_with("wgpu (--backend wgpu --device N):"), "{listed}");
    let count = wgpu.lines().filter(|line| line.split(':').next().is_some_and(|n| n.parse::<usize>().is_ok())).count();
    assert!(count >= 1, "no adapter listed: {listed}");

    let model = tiny_model_dir();
    let m = model.to_str().unwrap();
    let embed = |extra: &[&str]| simattr(&[&["--backend", "wgpu"], extra, &["embed", "--model", m, "Hi."]].concat());
    let out = embed(&["--device", "0"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let missing = count.to_string();
    let out = embed(&["--device", &missing]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("--device") && stderr.contains(&missing), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");

    let out = simattr(&["--device", "0", "embed", "--model", m, "Hi."]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("--device") && stderr.contains("wgpu"), "{stderr}");
}

/// `explain --backend wgpu` writes the golden matrix of the tiny model (forward and reverse
/// mode) and says which backend made it.
#[test]
fn explain_on_wgpu_gives_the_golden_matrix() {
    device_cli::explain_gives_the_golden_matrix("wgpu");
}

/// `--precision f16` (lavapipe offers 16-bit shader floats) stores every tensor in f16 and
/// computes in f32: the tiny fixtures' golden embeddings and attributions hold to 1e-2 of their
/// largest value, and the matrix really is rounded.
#[test]
fn f16_storage_stays_close_to_the_goldens() {
    let backend = WgpuBackend::new(BackendSettings::default(), None, Precision::F16).expect("an adapter with f16");
    assert_eq!(backend.precision(), Precision::F16);
    device_cli::half_storage_stays_close(&backend, "wgpu", 5e-2, 1e-2);
}
