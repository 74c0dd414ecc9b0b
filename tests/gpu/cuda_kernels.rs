//! The CUDA kernels as a GPU would get them, checked without one: every family compiles with
//! NVRTC for every architecture and storage precision, and `ptxas` (from NVIDIA's PyPI wheel,
//! as NVRTC is; the test command fetches both) assembles the PTX within the stated resource
//! limits. What the kernels compute is the shared suite's (`tests/backends`, `cuda_emu_f32`),
//! which runs the same source on the CPU harness. A missing tool fails these tests with the
//! command that installs it; they never skip.

use std::process::Command;

use simattr::backend::cuda::{nvrtc, toolkit, FAMILIES};
use simattr::backend::Precision;

const PRECISIONS: [Precision; 3] = [Precision::F32, Precision::F16, Precision::Bf16];

/// What one kernel may use on every architecture (kernels/README.md states the same): no
/// spills and no stack anywhere; the GEMM at most 96 registers (256 threads per block, so at
/// least two blocks per SM) and 8 KiB of shared memory (its two 64 × 16 f32 tiles); the other
/// kernels at most 64 registers, and shared memory only for LayerNorm's two 64-lane reductions.
fn limits(family: &str) -> (u32, u32) {
    match family {
        "matmul" => (96, 8192),
        "layer_norm" => (64, 512),
        _ => (64, 0),
    }
}

#[derive(Debug)]
struct Resources {
    kernel: String,
    registers: u32,
    shared: u32,
    stack: u32,
    spill_stores: u32,
    spill_loads: u32,
}

/// The number in front of `unit` in `text` ("72 registers", "8192 bytes smem"), 0 if absent.
fn figure(text: &str, unit: &str) -> u32 {
    text.find(unit)
        .and_then(|end| text[..end].trim_end().rsplit(|c: char| !c.is_ascii_digit()).next()?.parse().ok())
        .unwrap_or(0)
}

/// `ptxas -v`'s report, kernel by kernel.
fn assemble(ptx: &str, arch: u32) -> Vec<Resources> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kernels.ptx");
    std::fs::write(&path, ptx).unwrap();
    let ptxas = toolkit::ptxas().unwrap_or_else(|e| panic!("{e}"));
    let out = Command::new(&ptxas)
        .args([format!("-arch=sm_{arch}").as_str(), "-v", path.to_str().unwrap(), "-o"])
        .arg(dir.path().join("kernels.cubin"))
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", ptxas.display()));
    let report = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "ptxas sm_{arch} failed:\n{report}");
    let mut kernels = Vec::new();
    let mut current: Option<Resources> = None;
    for line in report.lines() {
        if let Some(rest) = line.split("Compiling entry function '").nth(1) {
            kernels.extend(current.take());
            let kernel = rest.split('\'').next().unwrap().to_string();
            current = Some(Resources { kernel, registers: 0, shared: 0, stack: 0, spill_stores: 0, spill_loads: 0 });
        } else if let Some(k) = current.as_mut() {
            if line.contains("stack frame") {
                k.stack = figure(line, "bytes stack frame");
                k.spill_stores = figure(line, "bytes spill stores");
                k.spill_loads = figure(line, "bytes spill loads");
            }
            if line.contains("Used") {
                k.registers = figure(line, "registers");
                k.shared = figure(line, "bytes smem");
            }
        }
    }
    kernels.extend(current);
    kernels
}

#[test]
fn every_kernel_compiles_for_every_architecture_within_its_limits() {
    let mut report = Vec::new();
    for family in FAMILIES {
        let (max_registers, max_shared) = limits(family);
        let want = nvrtc::kernel_names(family).unwrap();
        assert!(!want.is_empty(), "{family}.cu declares no kernel");
        for arch in nvrtc::ARCHITECTURES {
            for precision in PRECISIONS {
                let ptx = nvrtc::compile_ptx(family, arch, precision).unwrap_or_else(|e| panic!("{e}"));
                let kernels = assemble(&ptx, arch);
                let mut got: Vec<String> = kernels.iter().map(|k| k.kernel.clone()).collect();
                got.sort();
                assert_eq!(got, want, "{family}.cu sm_{arch} {}: kernels in the PTX", precision.name());
                for k in &kernels {
                    let at = format!("{family}.cu `{}` sm_{arch} {}", k.kernel, precision.name());
                    assert_eq!((k.spill_stores, k.spill_loads), (0, 0), "{at} spills: {k:?}");
                    assert_eq!(k.stack, 0, "{at} uses a stack frame: {k:?}");
                    assert!(k.registers > 0 && k.registers <= max_registers, "{at}: {k:?}, limit {max_registers}");
                    assert!(k.shared <= max_shared, "{at}: {k:?}, shared limit {max_shared}");
                    if precision == Precision::F32 {
                        report.push(format!("{at}: {} registers, {} B shared", k.registers, k.shared));
                    }
                }
            }
        }
    }
    println!("{}", report.join("\n"));
}

/// NVRTC gets each family as one string, common.cuh inlined (it has no file system to look in);
/// an unknown family is an error, not a panic.
#[test]
fn the_family_sources_inline_the_common_header() {
    for family in FAMILIES {
        let source = nvrtc::source(family).unwrap();
        assert!(!source.contains("#include \"common.cuh\""), "{family}: common.cuh not inlined");
        assert!(source.contains("typedef float real;"), "{family}: the storage types are missing");
    }
    assert!(nvrtc::source("nonsense").is_err());
}

/// What a GPU loads: a cubin (ELF) per family, architecture and precision, holding every
/// kernel and the symbol that names its storage precision.
#[test]
fn every_family_compiles_to_a_cubin_naming_its_kernels_and_storage() {
    for family in FAMILIES {
        let kernels = nvrtc::kernel_names(family).unwrap();
        for arch in nvrtc::ARCHITECTURES {
            for precision in PRECISIONS {
                let at = format!("{family}.cu sm_{arch} {}", precision.name());
                let cubin = nvrtc::compile(family, nvrtc::Target::Cubin(arch), precision)
                    .unwrap_or_else(|e| panic!("{at}: {e}"));
                assert_eq!(&cubin[..4], b"\x7fELF", "{at}: not a cubin");
                let holds =
                    |name: &str| cubin.windows(name.len() + 2).any(|w| w == [b"\0", name.as_bytes(), b"\0"].concat());
                for kernel in &kernels {
                    assert!(holds(kernel), "{at}: no kernel `{kernel}`");
                }
                for other in PRECISIONS {
                    let symbol = nvrtc::storage_symbol(other).unwrap();
                    assert_eq!(holds(symbol), other == precision, "{at}: storage symbol {symbol}");
                }
            }
        }
    }
}

/// A device this NVRTC knows gets its own cubin; a newer one PTX for the newest architecture
/// below it (its driver compiles that); one older than all of them a clear error.
#[test]
fn a_device_gets_a_cubin_when_nvrtc_knows_its_architecture_else_ptx() {
    let known = nvrtc::supported_architectures().unwrap();
    for arch in nvrtc::ARCHITECTURES {
        assert!(known.contains(&arch), "NVRTC does not compile for sm_{arch}: {known:?}");
        assert_eq!(nvrtc::Target::for_device(arch).unwrap(), nvrtc::Target::Cubin(arch));
    }
    let newest = *known.last().unwrap();
    assert_eq!(nvrtc::Target::for_device(newest + 7).unwrap(), nvrtc::Target::Ptx(newest));
    let ptx = nvrtc::compile("gelu", nvrtc::Target::Ptx(newest), Precision::F32).unwrap();
    assert!(ptx.starts_with(b"//") && ptx.ends_with(b"\0"), "PTX for the driver is NUL-terminated text");
    let error = nvrtc::Target::for_device(known[0] - 1).unwrap_err().to_string();
    assert!(error.contains(&format!("sm_{}", known[0] - 1)) && error.contains("older"), "{error}");
}
