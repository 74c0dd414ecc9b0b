//! simattr: explains why a Siamese sentence encoder finds two texts similar, with the
//! integrated-Jacobian attributions of Moeller, Nikolaev and Padó.
//!
//! The pipeline, one module each:
//! `params` (the ground floor: the parameter tree and tensor roles) → `model` (load a
//! sentence-transformers folder) → `backend` (who runs the ops: the op trait, the CPU
//! reference, the fast CPU backend) → `net` (the network description: forward and JVP over
//! ops) → `attribution` (P per text, A per pair) → `batch` (many pairs, each text's P once)
//! → `output` (JSON, heatmap, summary); `session` holds a model on a run-time backend for
//! long-lived callers (the Python package). The
//! binary in `main.rs` is the CLI.

pub mod attribution;
pub mod backend;
pub mod batch;
pub mod embed;
pub mod error;
pub mod job;
pub mod model;
pub mod net;
pub mod output;
pub mod params;
pub mod session;
pub mod train;

pub use error::{Error, Result};
