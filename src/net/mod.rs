//! The network description: each family's block as data (`block`, `families`), the passes
//! derived from it, and the encoder stack. Written once; every backend runs it.

pub mod backprop;
pub mod block;
pub mod embeddings;
pub mod encoder;
pub mod families;
pub mod flops;
pub mod heads;
pub mod layer;
pub mod packing;
pub mod pooling;
pub mod relative_bias;
pub mod shift;

pub use encoder::Encoder;
