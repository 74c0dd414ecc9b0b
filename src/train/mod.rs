//! Fine-tuning exact models (`simattr train`): a sentence-transformers model trained with the
//! shifted reference, so that `e(r) = 0` and its attributions add up to the score itself.

pub mod data;
pub mod metrics;
pub mod rng;

pub mod adamw;
pub mod checkpoint;
pub mod export;
pub mod objective;
pub mod run;
pub mod step;
