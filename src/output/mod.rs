//! What leaves the engine: JSON files, heatmap pictures, the HTML report, the terminal summary,
//! the Jacobians as safetensors.

pub mod files;
pub mod heatmap;
pub mod html;
pub mod json;
pub mod markup;
pub mod provenance;
pub mod summary;
pub mod tensors;
