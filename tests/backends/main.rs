//! The one test suite every backend runs (docs/design.md §3, "One test suite for every backend").
//!
//! - Blocks (`blocks`): a block written only as a description (pre-LN) through every pass.
//! - Rewrites (`recording`): the walks still issue the fused and structured ops (a backend that
//!   records each op it is asked for), since a fall-back to the plain ops passes every numeric test.
//! - Tier 1 (`ops`, `vjp`, `end_to_end`): every op, forward, JVP and VJP, small and fused, against
//!   `CpuReference<f64>` on random shapes; the tiny fixtures (BERT, MPNet, RoBERTa,
//!   XLM-RoBERTa; mean, CLS and max pooling) end to end against the PyTorch goldens;
//!   completeness and its convergence rate; independence of threads and passes.
//! - Tier 1, weight gradients (`weight_grads`): the `WeightGradients` ops training adds (the
//!   dense layer's and LayerNorm's weight gradients, `mul`, attention with dropout and its VJP)
//!   against `CpuReference<f64>`, with their adjoint identities; on the CPU backends, the ones
//!   that implement `WeightGradients`.
//! - Tier 2 (`real_model`): the real all-MiniLM-L6-v2 goldens (CPU backends, in CI), and the
//!   real all-mpnet-base-v2 goldens on the backends fast enough for its 768-wide layers.
//! - `oracle`: `CpuReference<f64>` itself against the float64 goldens, at 1e-10.
//!
//! A backend joins the suite with one line in the `backend_suite!` list at the bottom, and the
//! weight gradients by implementing `WeightGradients` and adding one line to `gradient_suite!`.

#[path = "../common/mod.rs"]
mod common;

mod blocks;
mod embeddings;
mod end_to_end;
mod families;
mod heads;
mod jvp_finite_differences;
mod ops;
mod oracle;
mod progress;
mod real_model;
mod recording;
mod vjp;
mod vjp_finite_differences;
mod weight_grads;
mod weights_dtypes;

/// Per-op tolerance: relative max-norm error against `CpuReference<f64>` (docs/design.md §3).
pub const F32_OP_TOLERANCE: f64 = 1e-5;
/// End to end against the float64 goldens, as a fraction of max|A| (docs/design.md §3).
pub const F32_GOLDEN_TOLERANCE: f64 = 1e-5;

/// The tier-1 end-to-end tests of one tiny fixture, as a module of the backend's suite.
macro_rules! fixture_tests {
    ($($module:ident => $fixture:literal;)*) => {$(
        mod $module {
            use super::default;

            #[test] fn embeddings_match_pytorch() { crate::end_to_end::tiny_embeddings(&default(), $fixture) }
            #[test] fn attributions_match_pytorch() { crate::end_to_end::tiny_attributions(&default(), $fixture) }
            #[test] fn attributions_match_pytorch_in_reverse_mode() {
                crate::end_to_end::tiny_attributions_reverse(&default(), $fixture, super::SUITE)
            }
            #[test] fn reverse_mode_equals_forward_mode() {
                crate::end_to_end::reverse_mode_equals_forward_mode(&default(), $fixture)
            }
            #[test] fn structured_pass_equals_plain_path() {
                crate::end_to_end::structured_pass_equals_plain_path(&default(), $fixture)
            }
            #[test] fn packed_embeddings_equal_single() {
                crate::end_to_end::packed_embeddings_equal_single(&default(), $fixture)
            }
            #[test] fn path_probe_is_the_derivative_along_the_path() {
                crate::end_to_end::path_probe_is_the_derivative_along_the_path(&default(), $fixture)
            }
        }
    )*};
}

/// Tier 2 on the real all-mpnet-base-v2: every golden case at layers 6, 9 and 11.
macro_rules! mpnet_tests {
    () => {
        #[test]
        fn mpnet_embeddings_match_pytorch() {
            crate::real_model::mpnet_embeddings(&default())
        }
        #[test]
        fn mpnet_attributions_match_pytorch_at_layer_6() {
            crate::real_model::mpnet_attributions_at(&default(), 6)
        }
        #[test]
        fn mpnet_attributions_match_pytorch_at_layer_9() {
            crate::real_model::mpnet_attributions_at(&default(), 9)
        }
        #[test]
        fn mpnet_attributions_match_pytorch_at_layer_11() {
            crate::real_model::mpnet_attributions_at(&default(), 11)
        }
    };
}

/// Tier 2 through more layers, on the CPU backends (lavapipe would take minutes per case).
macro_rules! minilm_deep_tests {
    () => {
        #[test]
        fn minilm_attributions_match_pytorch_at_layer_0() {
            crate::real_model::attributions_at(&default(), 0)
        }
        #[test]
        fn minilm_attributions_match_pytorch_at_layer_3() {
            crate::real_model::attributions_at(&default(), 3)
        }
    };
}

/// Tier 2 in reverse mode, on a backend fast enough for it: MiniLM's layer-5 goldens (10 steps:
/// 384 cotangents per step through one layer).
macro_rules! reverse_real_tests {
    () => {
        #[test]
        fn minilm_attributions_match_pytorch_in_reverse_mode_at_layer_5() {
            crate::real_model::attributions_in_reverse_at(&default(), 5)
        }

        #[test]
        fn minilm_reverse_mode_equals_forward_mode_on_every_golden_text_and_layer() {
            crate::real_model::minilm_reverse_equals_forward(&default())
        }

        #[test]
        fn mpnet_reverse_mode_equals_forward_mode_on_every_golden_text_and_layer() {
            crate::real_model::mpnet_reverse_equals_forward(&default())
        }
    };
}

macro_rules! backend_suite {
    ($($(#[$attr:meta])* $name:ident => $make:expr $(, $extra:ident)*;)*) => {$(
        $(#[$attr])*
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

            /// The suite's name, which says whether it runs a GPU's kernels on this CPU.
            const SUITE: &str = stringify!($name);

            // ---- tier 1: ops -----------------------------------------------------------------
            #[test] fn gather_rows() { crate::ops::gather_rows(&default()) }
            #[test] fn elementwise() { crate::ops::elementwise(&default()) }
            #[test] fn interpolate_and_tangents() { crate::ops::interpolate_and_tangents(&default()) }
            #[test] fn linear_and_matmul() { crate::ops::linear_and_matmul(&default()) }
            #[test] fn layer_norm_and_jvp() { crate::ops::layer_norm_and_jvp(&default()) }
            #[test] fn gelu_and_jvp() { crate::ops::gelu_and_jvp(&default()) }
            #[test] fn rms_norm_and_jvp() { crate::ops::rms_norm_and_jvp(&default()) }
            #[test] fn gated_and_jvp() { crate::ops::gated_and_jvp(&default()) }
            #[test] fn activation_and_jvp() { crate::ops::activation_and_jvp(&default()) }
            #[test] fn weighted_pool() { crate::ops::weighted_pool(&default()) }
            #[test] fn rope_and_head_norm() { crate::ops::rope_and_head_norm(&default()) }
            #[test] fn bad_shapes_are_errors_not_panics() { crate::ops::bad_shapes_are_errors_not_panics(&default()) }
            #[test] fn attention_and_jvp() { crate::ops::attention_and_jvp(&default()) }
            #[test] fn attention_key_mask_drops_padding() { crate::ops::attention_key_mask_drops_padding(&default()) }
            #[test] fn pooling() { crate::ops::pooling(&default()) }
            #[test] fn bias_residual_norm() { crate::ops::bias_residual_norm(&default()) }
            #[test] fn bias_gelu() { crate::ops::bias_gelu(&default()) }
            #[test] fn attention_token_jvp() { crate::ops::attention_token_jvp(&default()) }
            #[test] fn pooled_output_norm() { crate::ops::pooled_output_norm(&default()) }
            #[test] fn layer_jvp_real_widths() { crate::ops::layer_jvp_real_widths(&default()) }
            #[test] fn memory_budget_sizes_rows() { crate::ops::memory_budget_sizes_rows(backend) }

            // ---- tier 1: reverse mode, every op's VJP and its adjoint identity ---------------------
            #[test] fn matmul_vjp() { crate::vjp::matmul_vjp(&default()) }
            #[test] fn layer_norm_vjp() { crate::vjp::layer_norm_vjp(&default()) }
            #[test] fn gelu_vjp() { crate::vjp::gelu_vjp(&default()) }
            #[test] fn rms_norm_vjp() { crate::vjp::rms_norm_vjp(&default()) }
            #[test] fn gated_vjp() { crate::vjp::gated_vjp(&default()) }
            #[test] fn activation_vjp() { crate::vjp::activation_vjp(&default()) }
            #[test] fn rope_and_head_norm_vjp() { crate::vjp::rope_and_head_norm_vjp(&default()) }
            #[test] fn attention_vjp() { crate::vjp::attention_vjp(&default()) }
            #[test] fn pooling_vjp() { crate::vjp::pooling_vjp(&default()) }
            #[test] fn mean_pooled_norm_linear_vjp() { crate::vjp::mean_pooled_norm_linear_vjp(&default()) }

            // ---- tier 1: the tiny fixtures end to end -----------------------------------------
            fixture_tests! {
                tiny_bert => "tiny-bert";
                tiny_mpnet => "tiny-mpnet";
                tiny_roberta => "tiny-roberta";
                tiny_xlm_roberta => "tiny-xlm-roberta";
                tiny_bert_cls => "tiny-bert-cls";
                tiny_mpnet_max => "tiny-mpnet-max";
                tiny_bert_lasttoken => "tiny-bert-lasttoken";
                tiny_bert_weightedmean => "tiny-bert-weightedmean";
                tiny_bert_sqrtlen => "tiny-bert-sqrtlen";
                tiny_t5 => "tiny-t5";
                tiny_t5_relu => "tiny-t5-relu";
                tiny_qwen3 => "tiny-qwen3";
                tiny_gemma3 => "tiny-gemma3";
                tiny_modernbert => "tiny-modernbert";
                tiny_nomic_bert => "tiny-nomic-bert";
                tiny_jina_bert => "tiny-jina-bert";
            }
            #[test] fn prompt_left_out_of_pooling() {
                for fixture in crate::end_to_end::INCLUDE_PROMPT_FALSE {
                    crate::end_to_end::prompt_left_out_of_pooling(&default(), fixture);
                }
            }
            #[test] fn completeness_converges() { crate::end_to_end::completeness_converges(&default()) }
            #[test] fn better_rules_converge_faster() { crate::end_to_end::better_rules_converge_faster(&default()) }
            #[test] fn decomposition_adds_up_to_the_score() { crate::end_to_end::decomposition_adds_up_to_the_score(&default()) }
            #[test] fn decomposition_splits_weighted_poolings() { crate::end_to_end::decomposition_splits_weighted_poolings(&default()) }
            #[test] fn cos_exact_adds_up_as_the_quadrature_converges() { crate::end_to_end::cos_exact_adds_up_as_the_quadrature_converges(&default()) }
            #[test] fn exact_model_adds_up_to_the_score() { crate::end_to_end::exact_model_adds_up_to_the_score(&default()) }
            #[test] fn passes_and_threads_do_not_change_results() { crate::end_to_end::passes_and_threads(backend) }

            // ---- tier 2: the real model -----------------------------------------------------
            #[test] fn minilm_embeddings_match_pytorch() { crate::real_model::embeddings(&default()) }
            #[test] fn minilm_attributions_match_pytorch_at_layer_5() { crate::real_model::attributions_at(&default(), 5) }
            $($extra!();)*
        }
    )*};
}

backend_suite! {
    cpu_reference_f32 => |settings| simattr::backend::reference::CpuReference::<f32>::with_settings(settings), minilm_deep_tests;
    // The reference's plain loops would take minutes per MPNet case; the f64 oracle checks one
    // MPNet pair itself (oracle.rs).
    // The default: f32 tangents, f64 primal states.
    cpu_f32 => |settings| simattr::backend::cpu::CpuBackend::new(settings).expect("cpu backend"), minilm_deep_tests, mpnet_tests, reverse_real_tests;
    // `--primal f32`: everything in f32. Not held to the MPNet layer-6 goldens, whose sharp
    // integrand amplifies f32 primal rounding to 3e-4 of max|A| (docs/correctness.md, "Real models and the f64 primal").
    cpu_f32_primal_f32 => |settings| {
        let settings = settings.with_primal(simattr::backend::Precision::F32);
        simattr::backend::cpu::CpuBackend::new(settings).expect("cpu backend")
    }, minilm_deep_tests;
    // WGSL on the default adapter: Mesa's lavapipe in CI (the test command installs it). No
    // adapter is a failure, never a skip.
    #[cfg(feature = "wgpu")]
    wgpu_f32 => |settings| {
        simattr::backend::wgpu::WgpuBackend::new(settings, None, simattr::backend::Precision::F32).expect("a wgpu adapter (the test command installs Mesa's lavapipe)")
    };
    // The CUDA kernels, run as C++ on the CPU execution harness (kernels/emu).
    #[cfg(feature = "cuda-emu")]
    cuda_emu_f32 => |settings| {
        simattr::backend::cuda::CudaEmuBackend::emulated(settings, simattr::backend::Precision::F32).expect("the CUDA harness")
    };
    // `--backend cuda` itself: cudarc, NVRTC's cubins, device memory and launches, on the GPU
    // where the machine has one, else on the emulated driver (kernels/emu/driver), which runs
    // the kernels on the harness. Without either it fails, never skips.
    #[cfg(feature = "cuda")]
    cuda_f32 => |settings| {
        crate::common::emulated_driver::open_in_process();
        simattr::backend::cuda::CudaBackend::open(settings, None, simattr::backend::Precision::F32)
            .expect("a CUDA device (the test command builds the emulated driver)")
    };
}

/// The weight-gradient tests of every backend that implements `WeightGradients`, in a module
/// of their own beside `backend_suite!`'s (`weight_gradients::cpu_f32::…`).
macro_rules! gradient_suite {
    ($($name:ident => $make:expr;)*) => {
        mod weight_gradients {$(
            mod $name {
                use simattr::backend::{BackendSettings, WeightGradients};

                fn default() -> impl WeightGradients {
                    let make: fn(BackendSettings) -> _ = $make;
                    make(BackendSettings::default())
                }

                #[test] fn linear_weight_grad() { crate::weight_grads::linear_weight_grad(&default()) }
                #[test] fn layer_norm_weight_grad() { crate::weight_grads::layer_norm_weight_grad(&default()) }
                #[test] fn head_norm_weight_grad() { crate::weight_grads::head_norm_weight_grad(&default()) }
                #[test] fn mul() { crate::weight_grads::mul(&default()) }
                #[test] fn attention_dropout() { crate::weight_grads::attention_dropout(&default()) }
                #[test] fn attention_dropout_vjp() { crate::weight_grads::attention_dropout_vjp(&default()) }
            }
        )*}
    };
}

gradient_suite! {
    cpu_reference_f32 => |settings| simattr::backend::reference::CpuReference::<f32>::with_settings(settings);
    cpu_f32 => |settings| simattr::backend::cpu::CpuBackend::new(settings).expect("cpu backend");
    cpu_f32_primal_f32 => |settings| {
        let settings = settings.with_primal(simattr::backend::Precision::F32);
        simattr::backend::cpu::CpuBackend::new(settings).expect("cpu backend")
    };
}
