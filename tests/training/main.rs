//! Training exact models: the `train` command end to end, the loss and its weight gradients
//! against PyTorch's (`golden`) and against finite differences (`gradients`).

#[path = "../common/mod.rs"]
mod common;

mod golden;
mod gradients;
mod networks;
mod train;
