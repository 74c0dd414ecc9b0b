//! What the command line says about itself: the choices clap lists in `--help`, bad values
//! refused with the choices named, the shell completion scripts, and, in a CPU-only build
//! (`--no-default-features`, `.ci/run` runs this binary so), the GPU backends refused with the
//! feature that would build them.

use std::process::{Command, Output};

fn simattr(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_simattr")).args(args).output().expect("run simattr")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn help_lists_the_backends_and_precisions() {
    let out = simattr(&["explain", "--help"]);
    assert!(out.status.success());
    let help = text(&out.stdout);
    // Backends with a line each, saying what they are; precisions in a list.
    for backend in ["cpu", "cpu-ref", "wgpu", "cuda", "cuda-emu"] {
        assert!(help.contains(&format!("- {backend}: ")), "--help does not list --backend {backend}:\n{help}");
    }
    assert!(help.contains("[possible values: f64, f32, bf16, f16]"), "--help does not list the precisions:\n{help}");
    assert!(help.contains("--primal <PRIMAL>") && help.contains("[possible values: f64, f32]"), "{help}");
}

#[test]
fn a_bad_choice_is_refused_with_the_choices() {
    for (flag, value, listed) in [
        ("--backend", "tpu", "cpu-ref"),
        ("--precision", "f8", "bf16"),
        ("--primal", "f16", "f64"),
        ("--max-memory", "lots", "512M"),
    ] {
        let out = simattr(&[flag, value, "devices"]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{flag} {value}: {stderr}");
        assert!(stderr.contains(value) && stderr.contains(listed), "{flag} {value}: {stderr}");
    }
}

#[test]
fn completion_scripts_cover_the_commands_and_choices() {
    for (shell, marker) in [("bash", "_simattr()"), ("zsh", "#compdef simattr"), ("fish", "complete -c simattr")] {
        let out = simattr(&["completions", shell]);
        assert!(out.status.success(), "{shell}: {}", text(&out.stderr));
        let script = text(&out.stdout);
        assert!(script.contains(marker), "{shell}: no {marker}");
        for word in ["explain", "batch", "convergence", "completions", "cpu-ref", "bf16"] {
            assert!(script.contains(word), "the {shell} script lacks {word}");
        }
    }
    let out = simattr(&["completions", "tcsh"]);
    assert_eq!(out.status.code(), Some(1), "an unknown shell is a bad value");
}

/// Run by `.ci/run` on the `--no-default-features` build: the GPU backends are named as not
/// built, with the feature to build them, and `devices` says what the build is.
#[cfg(not(any(feature = "wgpu", feature = "cuda")))]
#[test]
fn a_cpu_only_build_names_the_missing_backends() {
    let model = crate::common::tiny_model_dir();
    for (backend, feature) in [("wgpu", "wgpu"), ("cuda", "cuda"), ("cuda-emu", "cuda-emu")] {
        let out = simattr(&["--backend", backend, "explain", "--model", model.to_str().unwrap(), "a", "b"]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{backend}: {stderr}");
        assert!(
            stderr.contains("not in this build") && stderr.contains(&format!("--features {feature}")),
            "{backend}: {stderr}"
        );
    }
    let out = simattr(&["devices"]);
    assert!(out.status.success() && text(&out.stdout).contains("CPU only"), "{}", text(&out.stdout));
}
