//! What leaves the engine: JSON files, heatmap pictures, the terminal summary.

pub mod files;
pub mod heatmap;
pub mod json;
pub mod summary;
