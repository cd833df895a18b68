//! ragbench-core: everything of ragbench that does not need PostgreSQL.
//!
//! Module map (one concern each):
//! - `ingest`    file formats (PDF, DOCX, text decoding) → parsing (plain text, Markdown, HTML)
//!               → sentence-aware chunks; embedding batch planning; content hashing
//! - `embed`     embedding providers: built-in model (candle), Ollama, OpenAI-compatible
//! - `chat`      prompt building, the extractive answerer and the LLM clients
//! - `limits`    budgets on every input (text, XML, chunks, nesting, words, metadata, pages)
//! - `interrupt` the cancel hook long-running functions call periodically
//! - `query_terms` long BM25 queries: the terms worth their cost
//!
//! Nothing here calls Postgres; the extension crate (`ragbench`, at the repository root) reads the
//! settings, passes them in as [`limits::Limits`], and turns errors into Postgres errors.

pub mod chat;
pub mod embed;
pub mod fusion;
pub mod ingest;
pub mod interrupt;
pub mod limits;
pub mod query_terms;
pub mod timing;

#[cfg(test)]
mod cancel_tests;
