//! `--backend cuda`: the CUDA kernels on a real GPU, through the host code the harness also
//! runs. Where the machine has an NVIDIA driver and GPU this gives the tiny model's golden
//! matrix; where it has none (CI, this project's machines) it must stop with an error that
//! names what is missing: a non-zero exit, no panic, no output file. Which of the two this
//! machine is, is decided by whether the driver library can be opened, as `--backend cuda`
//! itself decides it.

use crate::common;

use simattr::backend::cuda::CudaBackend;
use simattr::backend::{BackendSettings, Precision};

use common::device_cli::{self, simattr};
use common::tiny_model_dir;

fn driver_present() -> bool {
    // SAFETY: only probes whether libcuda can be opened.
    unsafe { cudarc::driver::sys::is_culib_present() }
}

#[test]
fn cuda_gives_the_golden_matrix_or_a_clear_error() {
    let error = match CudaBackend::open(BackendSettings::default(), None, Precision::F32) {
        Ok(_) => {
            device_cli::explain_gives_the_golden_matrix("cuda");
            return;
        }
        Err(error) => error.to_string(),
    };
    assert!(error.starts_with("CUDA: "), "{error}");
    if !driver_present() {
        assert!(error.contains("no CUDA driver") && error.contains("cuda-emu"), "{error}");
    }

    let dir = tempfile::tempdir().unwrap();
    let json_path = dir.path().join("out.json");
    let model = tiny_model_dir();
    let args = ["--backend", "cuda", "explain", "--model", model.to_str().unwrap(), "--json"];
    let out = simattr(&[&args[..], &[json_path.to_str().unwrap(), "A man is playing a guitar.", "Hi."]].concat());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains(&error), "the CLI does not report `{error}`: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!json_path.exists(), "an output file was written");
}

/// `--device` belongs to the GPU backends: an out-of-range CUDA device is an error naming
/// `--device` where there are GPUs; without a driver its absence is reported first.
#[test]
fn cuda_device_choice_is_checked() {
    let model = tiny_model_dir();
    let out = simattr(&["--backend", "cuda", "--device", "99", "embed", "--model", model.to_str().unwrap(), "Hi."]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && !stderr.contains("panicked"), "{stderr}");
    if driver_present() {
        assert!(stderr.contains("--device") || stderr.contains("CUDA: "), "{stderr}");
    } else {
        assert!(stderr.contains("no CUDA driver"), "{stderr}");
    }
}

/// `simattr devices` lists the CUDA GPUs under a heading of their own (numbered for `--backend
/// cuda --device`), or says why there are none; either way it succeeds.
#[test]
fn devices_lists_the_cuda_gpus_or_says_why_there_are_none() {
    let out = simattr(&["devices"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let listed = String::from_utf8_lossy(&out.stdout).to_string();
    let cuda = listed.split("cuda (--backend cuda --device N):\n").nth(1).unwrap_or_else(|| panic!("{listed}"));
    if driver_present() {
        assert!(!cuda.trim().is_empty(), "{listed}");
    } else {
        assert!(cuda.starts_with("no CUDA driver here") && cuda.contains("cuda-emu"), "{listed}");
    }
}
