//! Model loading: an unchanged sentence-transformers folder → config, tokenizer, host weights.

pub mod arch;
pub mod cache;
pub mod config;
pub mod digest;
pub mod folder;
pub mod tokenizer;
pub mod weights;

pub use arch::{Architecture, PositionIds};
pub use config::{AttentionMask, EncoderConfig, LayerAttention};
pub use folder::{DenseModule, Pooling, SentenceModel, SHIFTED_REFERENCE_MODULE};
pub use tokenizer::{ReferenceFraming, TextTokenizer, Tokenized};
