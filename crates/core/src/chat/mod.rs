//! The pure parts of `rag.ask`: prompt building with a token budget ([`prompt`]), the offline
//! extractive answerer ([`extractive`]) and the Ollama / OpenAI-compatible chat clients ([`llm`]).

pub mod extractive;
pub mod llm;
pub mod prompt;
