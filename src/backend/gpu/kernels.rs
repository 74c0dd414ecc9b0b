//! The typed contract between the host code and each kernel family: `shaders/<family>.wgsl` and
//! `kernels/<family>.cu` hold a family's kernels, and this file holds, once, what the host must
//! agree with them on:
//! - its parameter struct (`<family>::Params`), `#[repr(C)]` and laid out field for field as both
//!   files' `struct Params` (the uniform at binding 0 on wgpu, the first kernel argument on
//!   CUDA);
//! - its storage bindings by name (`<family>::QKV`, …), the numbers of the WGSL
//!   `@binding(N)` declarations; a CUDA kernel takes the buffers bound to it in binding order;
//! - its workgroup (WGSL) or block (CUDA) shape, and its sources.
//!
//! `FAMILIES` is the one table the wgpu, NVRTC and emulator paths read. The tests below parse
//! the sources and fail when a `struct Params`, a binding or a kernel's arguments disagree with
//! it.

use crate::error::{Error, Result};

/// A 32-bit field of a parameter struct, as the words of the uniform or kernel argument.
pub trait Word: Copy {
    /// The type's name in WGSL (`u32`, `f32`).
    const WGSL: &'static str;
    fn word(self) -> u32;
}

impl Word for u32 {
    const WGSL: &'static str = "u32";
    fn word(self) -> u32 {
        self
    }
}

impl Word for f32 {
    const WGSL: &'static str = "f32";
    fn word(self) -> u32 {
        self.to_bits()
    }
}

/// A family's parameter struct.
pub trait KernelParams: Copy {
    /// The family the struct belongs to (`FAMILIES`).
    const FAMILY: &'static str;
    /// The struct as the 32-bit words the kernels read.
    fn words(&self) -> Vec<u32>;
}

/// Declares a family's module: its `#[repr(C)] Params` and its named bindings.
macro_rules! family {
    (
        $(#[$doc:meta])*
        $family:ident {
            params { $($field:ident: $ty:ty),* $(,)? }
            bindings { $($binding:ident = $number:literal),* $(,)? }
        }
    ) => {
        $(#[$doc])*
        pub mod $family {
            use super::{KernelParams, Word};

            /// The family's `struct Params`, field for field.
            #[repr(C)]
            #[derive(Debug, Clone, Copy, Default, PartialEq)]
            pub struct Params {
                $(pub $field: $ty),*
            }

            impl Params {
                /// The fields by name and WGSL type, in order.
                pub const FIELDS: &'static [(&'static str, &'static str)] =
                    &[$((stringify!($field), <$ty as Word>::WGSL)),*];
            }

            impl KernelParams for Params {
                const FAMILY: &'static str = stringify!($family);
                fn words(&self) -> Vec<u32> {
                    vec![$(self.$field.word()),*]
                }
            }

            $(pub const $binding: u32 = $number;)*

            /// The storage bindings by name (the WGSL variable's, upper-cased) and number.
            pub const BINDINGS: &[(&str, u32)] = &[$((stringify!($binding), $number)),*];
        }
    };
}

family! {
    /// Elementwise ops, data movement and the quadrature's inputs.
    elementwise {
        params { len: u32, width: u32, count: u32, first: u32, tokens: u32, _pad0: u32, _pad1: u32, _pad2: u32 }
        bindings { A = 1, B = 2, IDS = 3, ALPHAS = 4, OUT = 5 }
    }
}

family! {
    /// The tiled GEMM, `x Wᵀ (+ b)` or `x W`.
    matmul {
        params { rows: u32, cols: u32, inner: u32, transposed: u32, with_bias: u32, _pad0: u32, _pad1: u32, _pad2: u32 }
        bindings { X = 1, W = 2, BIAS = 3, OUT = 4 }
    }
}

family! {
    /// LayerNorm, optionally fused with a bias and a residual, and its JVP and VJP.
    layer_norm {
        params { rows: u32, width: u32, tangents: u32, tokens: u32, eps: f32, transpose: u32, fused: u32, _pad: u32 }
        bindings {
            X = 1, GAMMA = 2, BETA = 3, NORMALIZED_IN = 4, INV_STD_IN = 5, OUT = 6, NORMALIZED = 7, INV_STD = 8,
            BIAS = 9, RESIDUAL = 10,
        }
    }
}

family! {
    /// GELU (exact, erf), optionally after a bias, and its JVP.
    gelu {
        params { len: u32, width: u32, tangents: u32, tokens: u32, with_bias: u32 }
        bindings { X = 1, DX = 2, OUT = 3, BIAS = 4 }
    }
}

family! {
    /// Attention's softmax and context, and the kernel pairs of its JVP and VJP.
    attention {
        params {
            seqs: u32, tokens: u32, heads: u32, head_dim: u32, tangents: u32, first_seq: u32, has_bias: u32,
            has_mask: u32, scale: f32, _pad0: u32, _pad1: u32, _pad2: u32,
        }
        bindings { QKV = 1, TANGENTS = 2, SCORE_BIAS = 3, KEY_MASK = 4, PROBS = 5, SCRATCH = 6, OUT = 7 }
    }
}

family! {
    /// Pooling with its derivatives, and the weighted sums into `P`.
    pooling {
        params { len: u32, width: u32, tokens: u32, tangents: u32, steps: u32, first: u32, columns: u32, _pad0: u32 }
        bindings { X = 1, DX = 2, DELTA = 3, WEIGHTS = 4, OUT = 5 }
    }
}

/// A kernel family: its sources and what the host agrees with them on.
pub struct Family {
    pub name: &'static str,
    /// The workgroup (WGSL) and block (CUDA) shape its kernels are written for.
    pub block: [u32; 3],
    pub wgsl: &'static str,
    pub cuda: &'static str,
    /// `Params::FIELDS`.
    pub params: &'static [(&'static str, &'static str)],
    /// `BINDINGS`.
    pub bindings: &'static [(&'static str, u32)],
}

macro_rules! family_row {
    ($family:ident, $block:expr) => {
        Family {
            name: stringify!($family),
            block: $block,
            wgsl: include_str!(concat!("../../../shaders/", stringify!($family), ".wgsl")),
            cuda: include_str!(concat!("../../../kernels/", stringify!($family), ".cu")),
            params: $family::Params::FIELDS,
            bindings: $family::BINDINGS,
        }
    };
}

/// Every kernel family.
pub const FAMILIES: [Family; 6] = [
    family_row!(elementwise, [256, 1, 1]),
    family_row!(matmul, [16, 16, 1]),
    family_row!(layer_norm, [64, 1, 1]),
    family_row!(gelu, [256, 1, 1]),
    family_row!(attention, [64, 1, 1]),
    family_row!(pooling, [64, 1, 1]),
];

/// The families' names, in `FAMILIES`' order.
pub const NAMES: [&str; 6] = {
    let mut names = [""; 6];
    let mut i = 0;
    while i < FAMILIES.len() {
        names[i] = FAMILIES[i].name;
        i += 1;
    }
    names
};

/// The family named `name`.
pub fn family(name: &str) -> Result<&'static Family> {
    FAMILIES
        .iter()
        .find(|family| family.name == name)
        .ok_or_else(|| Error::Internal(format!("no kernel family `{name}`")))
}

/// An internal error unless every binding number of a launch of `family` is one of its own.
pub fn check_bindings(family: &Family, entry: &str, numbers: impl IntoIterator<Item = u32>) -> Result<()> {
    for number in numbers {
        if !family.bindings.iter().any(|&(_, n)| n == number) {
            return Err(Error::Internal(format!(
                "{}.{entry} binds {number}, not a binding of its family",
                family.name
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `(name, type)` fields of the source's `struct Params`, types as WGSL names them.
    fn params_of(source: &str) -> Vec<(String, String)> {
        let start = source.find("struct Params").expect("a struct Params");
        let body = &source[start..][source[start..].find('{').unwrap() + 1..];
        let body = &body[..body.find('}').unwrap()];
        body.lines()
            .map(|line| line.split("//").next().unwrap().trim().trim_end_matches([',', ';']))
            .filter(|line| !line.is_empty())
            .map(|field| match field.split_once(':') {
                Some((name, ty)) => (name.trim().to_string(), ty.trim().to_string()),
                None => {
                    let (ty, name) = field.rsplit_once(' ').expect("a C field: type name");
                    let ty = match ty.trim() {
                        "unsigned" | "unsigned int" => "u32",
                        "float" => "f32",
                        other => panic!("a C parameter field of type {other}"),
                    };
                    (name.trim().to_string(), ty.to_string())
                }
            })
            .collect()
    }

    fn expected(fields: &[(&str, &str)]) -> Vec<(String, String)> {
        fields.iter().map(|(n, t)| (n.to_string(), t.to_string())).collect()
    }

    #[test]
    fn every_shader_and_kernel_params_struct_is_its_rust_struct() {
        for family in &FAMILIES {
            let want = expected(family.params);
            assert_eq!(params_of(family.wgsl), want, "shaders/{}.wgsl's struct Params", family.name);
            assert_eq!(params_of(family.cuda), want, "kernels/{}.cu's struct Params", family.name);
        }
    }

    #[test]
    fn every_shader_binding_is_named_as_the_host_names_it() {
        for family in &FAMILIES {
            let mut declared: Vec<(String, u32)> = family
                .wgsl
                .lines()
                .filter_map(|line| {
                    let rest = line.split("@binding(").nth(1)?;
                    let (number, rest) = rest.split_once(')')?;
                    let name = rest.split('>').nth(1)?.split(':').next()?.trim().to_uppercase();
                    Some((name, number.parse().ok()?))
                })
                .filter(|(name, _)| name != "PARAMS")
                .collect();
            declared.sort_by_key(|&(_, n)| n);
            let mut want: Vec<(String, u32)> = family.bindings.iter().map(|(n, b)| (n.to_string(), *b)).collect();
            want.sort_by_key(|&(_, n)| n);
            assert_eq!(declared, want, "shaders/{}.wgsl's bindings", family.name);
        }
    }

    /// A CUDA kernel takes its `Params`, then the buffers bound to it in binding order: its
    /// arguments must be bindings of the family, named as the shader names them, in that order.
    #[test]
    fn every_cuda_kernel_takes_its_buffers_in_binding_order() {
        for family in &FAMILIES {
            let mut kernels = 0;
            for signature in family.cuda.split("KERNEL ").skip(1) {
                let name = &signature[..signature.find('(').unwrap()];
                let args = &signature[signature.find('(').unwrap() + 1..signature.find(')').unwrap()];
                let mut args = args.split(',').map(|arg| arg.split_whitespace().last().unwrap().to_uppercase());
                assert_eq!(args.next().as_deref(), Some("P"), "{}.{name} takes its Params first", family.name);
                let numbers: Vec<u32> = args
                    .map(|arg| {
                        let binding = family.bindings.iter().find(|(n, _)| *n == arg);
                        binding.unwrap_or_else(|| panic!("{}.{name}: argument {arg} is no binding", family.name)).1
                    })
                    .collect();
                assert!(
                    numbers.windows(2).all(|w| w[0] < w[1]),
                    "{}.{name}: arguments out of binding order",
                    family.name
                );
                kernels += 1;
            }
            assert!(kernels > 0, "kernels/{}.cu has no kernels", family.name);
        }
    }

    #[test]
    fn words_follow_the_fields_and_floats_go_as_their_bits() {
        let p = attention::Params { seqs: 2, scale: 0.5, ..Default::default() };
        let words = p.words();
        assert_eq!(words.len(), attention::Params::FIELDS.len());
        assert_eq!((words[0], words[8]), (2, 0.5f32.to_bits()));
        assert_eq!(std::mem::size_of::<attention::Params>(), 4 * words.len());
        let error = check_bindings(family("gelu").unwrap(), "gelu", [1, 9]).unwrap_err().to_string();
        assert!(error.contains("gelu.gelu binds 9"), "{error}");
    }
}
