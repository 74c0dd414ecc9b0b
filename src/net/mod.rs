//! The network description: one encoder layer's forward and JVP over backend ops, and the
//! encoder stack. Written once; every backend runs it.

pub mod backprop;
pub mod encoder;
pub mod flops;
pub mod layer;
pub mod packing;
pub mod pooling;
pub mod relative_bias;
pub mod shift;

pub use encoder::Encoder;
