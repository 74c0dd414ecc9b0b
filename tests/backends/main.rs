//! The one test suite every backend runs (design.md §3, "One test suite for every backend").
//!
//! - Tier 1 (`ops`, `end_to_end`): every op, forward and JVP, small and fused, against
//!   `CpuReference<f64>` on random shapes; the tiny fixture end to end against the PyTorch
//!   goldens; completeness and its convergence rate; independence of threads and passes.
//! - Tier 2 (`real_model`): the real all-MiniLM-L6-v2 goldens (CPU backends, in CI).
//! - `oracle`: `CpuReference<f64>` itself against the float64 goldens, at 1e-10.
//!
//! A backend joins the suite with one line in the `backend_suite!` list at the bottom.

#[path = "../common/mod.rs"]
mod common;

mod end_to_end;
mod ops;
mod oracle;
mod real_model;

/// Per-op tolerance: relative max-norm error against `CpuReference<f64>` (design.md §3).
pub const F32_OP_TOLERANCE: f64 = 1e-5;
/// End to end against the float64 goldens, as a fraction of max|A| (design.md §3).
pub const F32_GOLDEN_TOLERANCE: f64 = 1e-5;

macro_rules! backend_suite {
    ($($name:ident => $make:expr;)*) => {$(
        mod $name {
            use simattr::backend::{Backend, BackendSettings};

            /// The backend under test with the given settings.
            fn backend(settings: BackendSettings) -> impl Backend {
                let make: fn(BackendSettings) -> _ = $make;
                make(settings)
            }

            fn default() -> impl Backend {
                backend(BackendSettings::default())
            }

            // ---- tier 1: ops -----------------------------------------------------------------
            #[test] fn gather_rows() { crate::ops::gather_rows(&default()) }
            #[test] fn elementwise() { crate::ops::elementwise(&default()) }
            #[test] fn interpolate_and_tangents() { crate::ops::interpolate_and_tangents(&default()) }
            #[test] fn linear_and_matmul() { crate::ops::linear_and_matmul(&default()) }
            #[test] fn layer_norm_and_jvp() { crate::ops::layer_norm_and_jvp(&default()) }
            #[test] fn gelu_and_jvp() { crate::ops::gelu_and_jvp(&default()) }
            #[test] fn attention_and_jvp() { crate::ops::attention_and_jvp(&default()) }
            #[test] fn attention_key_mask_drops_padding() { crate::ops::attention_key_mask_drops_padding(&default()) }
            #[test] fn pooling() { crate::ops::pooling(&default()) }
            #[test] fn bias_residual_norm() { crate::ops::bias_residual_norm(&default()) }
            #[test] fn bias_gelu() { crate::ops::bias_gelu(&default()) }
            #[test] fn attention_token_jvp() { crate::ops::attention_token_jvp(&default()) }
            #[test] fn pooled_output_norm() { crate::ops::pooled_output_norm(&default()) }
            #[test] fn layer_jvp_real_widths() { crate::ops::layer_jvp_real_widths(&default()) }
            #[test] fn memory_budget_sizes_rows() { crate::ops::memory_budget_sizes_rows(backend) }

            // ---- tier 1: the tiny fixture end to end ------------------------------------------
            #[test] fn tiny_embeddings_match_pytorch() { crate::end_to_end::tiny_embeddings(&default()) }
            #[test] fn packed_embeddings_equal_single() { crate::end_to_end::packed_embeddings_equal_single(&default()) }
            #[test] fn tiny_attributions_match_pytorch() { crate::end_to_end::tiny_attributions(&default()) }
            #[test] fn completeness_converges() { crate::end_to_end::completeness_converges(&default()) }
            #[test] fn structured_pass_equals_plain_path() { crate::end_to_end::structured_pass_equals_plain_path(&default()) }
            #[test] fn passes_and_threads_do_not_change_results() { crate::end_to_end::passes_and_threads(backend) }

            // ---- tier 2: the real model -----------------------------------------------------
            #[test] fn minilm_embeddings_match_pytorch() { crate::real_model::embeddings(&default()) }
            #[test] fn minilm_attributions_match_pytorch_at_layer_0() { crate::real_model::attributions_at(&default(), 0) }
            #[test] fn minilm_attributions_match_pytorch_at_layer_3() { crate::real_model::attributions_at(&default(), 3) }
            #[test] fn minilm_attributions_match_pytorch_at_layer_5() { crate::real_model::attributions_at(&default(), 5) }
        }
    )*};
}

backend_suite! {
    cpu_reference_f32 => |settings| simattr::backend::reference::CpuReference::<f32>::with_settings(settings);
    cpu_f32 => |settings| simattr::backend::cpu::CpuBackend::new(settings).expect("cpu backend");
}
