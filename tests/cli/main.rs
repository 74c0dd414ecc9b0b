//! The command line end to end: each command against the PyTorch goldens, bad input and its
//! messages, the JSON schemas, the pictures and the HTML report, the word view, batch runs, and
//! the documentation's links. One test binary, so the crate is linked once for all of them.

#[path = "../common/mod.rs"]
mod common;

mod bad_input;
mod batch;
mod commands;
mod docs;
mod explain;
mod heatmap;
mod html;
mod modules;
mod schemas;
mod words;
