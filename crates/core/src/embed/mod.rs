//! Embedding providers behind one interface ([`provider::Embedder`]): `builtin` (offline
//! all-MiniLM-L6-v2 in candle), `mpnet` (offline all-mpnet-base-v2 in candle), `ollama`, `openai`
//! (any OpenAI-compatible server). The extension chooses one from its settings; none of them calls
//! Postgres.

pub mod builtin;
pub(crate) mod encoder;
pub mod onnx;
pub mod http;
pub mod mpnet;
pub mod provider;
pub mod service;

pub use provider::{EmbedError, Embedder, InputKind};
