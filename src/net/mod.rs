//! The network description: parameters, one encoder layer's forward and JVP over backend
//! ops, and the encoder stack.

pub mod encoder;
pub mod layer;
pub mod params;

pub use encoder::Encoder;
