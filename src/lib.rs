//! simattr: explains why a Siamese sentence encoder finds two texts similar, with the
//! integrated-Jacobian attributions of Moeller, Nikolaev and Padó.
//!
//! The pipeline, one module each:
//! `model` (load a sentence-transformers folder) → `net` (the network description: forward
//! and JVP over ops) → `backend` (who runs the ops) → `attribution` (P per text, A per pair)
//! → `output` (JSON, heatmap, summary). The binary in `main.rs` is the CLI.

pub mod attribution;
pub mod backend;
pub mod embed;
pub mod error;
pub mod model;
pub mod net;
pub mod output;

pub use error::{Error, Result};
