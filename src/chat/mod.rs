//! `rag.ask`: a grounded answer over the documents, inside a chat session.
//!
//! Retrieval uses the session's search type (hybrid, bm25, vector). The generator is chosen by
//! `rag.llm_provider`: `extractive` (default, offline: the most relevant sentences of the sources,
//! quoted with their source, never invented text), `ollama` (`/api/chat`) or `openai`
//! (`/v1/chat/completions`). With an LLM, a follow-up question is first rewritten into a standalone
//! query from the history. The question and the answer are appended to the session only when the
//! answer exists: an LLM error stores nothing. Sessions and messages themselves are SQL (sql/chat.sql).

pub use ragbench_core::chat::{extractive, llm, prompt};

use crate::errors::{self, NoRowIsNone, SpiOk};
use crate::guc;
use crate::search;
use llm::ChatModel;
use pgrx::prelude::*;
use pgrx::{JsonB, Uuid};
use std::time::Duration;

const SESSION: &str = "SELECT search_type, llm_model FROM rag.chat_sessions WHERE id = $1";
const ENSURE_SESSION: &str = "INSERT INTO rag.chat_sessions (id) VALUES ($1) ON CONFLICT (id) DO NOTHING";
const HISTORY: &str = "SELECT role, content FROM rag.chat_history($1, $2)";
const APPEND: &str = "SELECT rag.chat_append($1, $2, $3, $4)";

/// One retrieved chunk, as reported in the answer's `sources`.
struct Hit {
    rank: usize,
    chunk_id: Uuid,
    document_id: Uuid,
    file_name: String,
    chunk_index: i32,
    content: String,
    score: f64,
}

fn retrieve(search_type: &str, query: &str, k: i32) -> Vec<Hit> {
    let rows: Vec<search::SearchRow> = match search_type {
        "bm25" => search::bm25::bm25_rows(query, k, &search::timing::Stopwatch::off()),
        "vector" => search::vector::vector_rows(query, k, &search::timing::Stopwatch::off()),
        _ => {
            let fusion = search::hybrid::FusionKind::Convex;
            let (bm25_weight, vector_weight) = fusion.default_weights();
            let p = search::hybrid::HybridParams {
                k,
                filter: None,
                bm25_weight,
                vector_weight,
                rrf_k: 60,
                candidates: search::hybrid::DEFAULT_CANDIDATES.max(k),
                fusion,
            };
            search::hybrid::hybrid_rows(query, &p, &search::timing::Stopwatch::off())
                .into_iter()
                .map(|r| (r.0, r.1, r.2, r.3, r.4, r.5, r.8))
                .collect()
        }
    };
    rows.into_iter()
        .enumerate()
        .map(|(i, r)| Hit {
            rank: i + 1,
            chunk_id: r.0,
            document_id: r.1,
            file_name: r.2,
            chunk_index: r.3,
            content: r.4,
            score: r.5,
        })
        .collect()
}

/// The configured LLM, or `None` for the extractive generator.
fn chat_model(session_model: Option<String>) -> Option<Box<dyn ChatModel>> {
    let provider = guc::string(&guc::LLM_PROVIDER).unwrap_or_else(|| "extractive".into()).to_lowercase();
    let (default_url, default_model) = match provider.as_str() {
        "extractive" => return None,
        "ollama" => ("http://127.0.0.1:11434", "llama3.2"),
        "openai" => ("https://api.openai.com", "gpt-4o-mini"),
        other => errors::invalid(
            format!("unknown rag.llm_provider '{other}'"),
            "Set rag.llm_provider to extractive, ollama or openai.",
        ),
    };
    let model = session_model.or_else(|| guc::string(&guc::LLM_MODEL)).unwrap_or_else(|| default_model.to_string());
    crate::secrets::require_allowed(&guc::ALLOWED_LLM_MODELS, "rag.allowed_llm_models", &provider, &model);
    let cfg = llm::LlmConfig {
        base_url: guc::string(&guc::LLM_URL).unwrap_or_else(|| default_url.to_string()),
        model,
        api_key: crate::secrets::api_key(&guc::LLM_URL, &guc::LLM_API_KEY_FILE, "rag.llm_url", "rag.llm_api_key_file"),
        timeout: Duration::from_millis(crate::secrets::capped_timeout_ms(guc::LLM_TIMEOUT_MS.get())),
        max_retries: crate::secrets::capped_retries(guc::LLM_MAX_RETRIES.get()),
        temperature: 0.1,
        max_tokens: None,
    };
    let built: Result<Box<dyn ChatModel>, llm::ChatError> = if provider == "ollama" {
        llm::OllamaChat::new(cfg).map(|m| Box::new(m) as Box<dyn ChatModel>)
    } else {
        llm::OpenAiChat::new(cfg).map(|m| Box::new(m) as Box<dyn ChatModel>)
    };
    match built {
        Ok(m) => Some(m),
        Err(e) => errors::external(format!("chat model: {e}"), "Check rag.llm_url and rag.llm_model."),
    }
}

fn complete(model: &dyn ChatModel, messages: &[prompt::ChatMessage]) -> String {
    match model.complete_with(messages, &errors::interrupt) {
        Ok(text) => text,
        Err(e) => errors::external(
            format!("answer generation failed: {e}"),
            "Nothing was stored in the session. Check rag.llm_provider, rag.llm_url and that the server is up.",
        ),
    }
}

/// Characters of a question that retrieval and the extractive answer read.
const MAX_QUERY_CHARS: usize = 4096;

/// The first `max` characters of `s`.
fn prefix_chars(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Answer `question` in session `session_id` from the documents: `{answer, sources, model, search_query}`.
#[pg_extern(parallel_unsafe)]
fn ask(session_id: Uuid, question: &str, k: default!(i32, 5)) -> JsonB {
    crate::read::require_primary("rag.ask (it appends the question and the answer to the session)");
    if question.trim().is_empty() {
        errors::invalid("question must not be empty", "Ask something about your documents.");
    }
    if !(1..=50).contains(&k) {
        errors::invalid(format!("k must be between 1 and 50, got {k}"), "5 sources usually suffice.");
    }
    Spi::run_with_args(ENSURE_SESSION, &[session_id.into()]).or_raise("creating the session");
    let (search_type, session_model) = match crate::read::two::<String, String>(SESSION, &[session_id.into()])
        .or_raise("reading the session")
    {
        Some(row) => row,
        // A session id that exists but is not the caller's (row-level security hides it) is refused like
        // rag.chat_append refuses it, without saying whose it is.
        None => errors::raise(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!("chat session {session_id} is not one of this role's sessions (in this tenant)"),
            "Start a new session with another id.",
        ),
    };
    let search_type = search_type.unwrap_or_else(|| "hybrid".into());
    let history: Vec<prompt::Turn> = Spi::connect(|client| {
        let rows = client.select(HISTORY, None, &[session_id.into(), guc::CHAT_HISTORY_MESSAGES.get().into()])?;
        rows.map(|r| {
            Ok(prompt::Turn {
                role: r.get::<String>(1)?.unwrap_or_default(),
                content: r.get::<String>(2)?.unwrap_or_default(),
            })
        })
        .collect::<Result<Vec<_>, pgrx::spi::SpiError>>()
    })
    .or_raise("reading the history");
    let budget = guc::CHAT_TOKEN_BUDGET.get().max(256) as usize;

    let model = chat_model(session_model);
    // Retrieval and the extractive answer read the question's first MAX_QUERY_CHARS characters (a
    // question is a few sentences; a 200 kB one took 42 s of search and sentence scoring); the
    // whole question is still stored and sent to an LLM within the token budget.
    let query_text = prefix_chars(question, MAX_QUERY_CHARS);
    // A follow-up ("and how do I tune it?") needs the history to be searchable on its own.
    let search_query = match (&model, history.is_empty()) {
        (Some(m), false) => {
            let rewritten = complete(m.as_ref(), &prompt::build_rewrite_prompt(question, &history, budget));
            let rewritten = rewritten.trim();
            if rewritten.is_empty() { query_text.to_string() } else { prefix_chars(rewritten, MAX_QUERY_CHARS).to_string() }
        }
        _ => query_text.to_string(),
    };
    let hits = retrieve(&search_type, &search_query, k);
    let sources: Vec<prompt::Source> = hits
        .iter()
        .map(|h| prompt::Source {
            rank: h.rank,
            chunk_id: h.chunk_id.to_string(),
            file_name: h.file_name.clone(),
            content: h.content.clone(),
        })
        .collect();
    let (answer, model_name) = match &model {
        Some(m) => (complete(m.as_ref(), &prompt::build_answer_prompt(question, &sources, &history, budget)), m.model_id()),
        None => {
            let quotes = extractive::select_sentences(query_text, &sources, 3);
            (extractive::render_answer(&quotes), "extractive".to_string())
        }
    };
    let source_json: Vec<serde_json::Value> = hits
        .iter()
        .map(|h| {
            serde_json::json!({
                "rank": h.rank, "chunk_id": h.chunk_id.to_string(), "document_id": h.document_id.to_string(),
                "file_name": h.file_name, "chunk_index": h.chunk_index, "score": h.score,
            })
        })
        .collect();
    let result = serde_json::json!({
        "answer": answer,
        "sources": source_json,
        "model": model_name,
        "search_type": search_type,
        "search_query": search_query,
        "session_id": session_id.to_string(),
    });
    append(session_id, "user", question, serde_json::json!({}));
    append(
        session_id,
        "assistant",
        &answer,
        serde_json::json!({"sources": result["sources"], "model": result["model"], "search_query": result["search_query"]}),
    );
    JsonB(result)
}

fn append(session_id: Uuid, role: &str, content: &str, metadata: serde_json::Value) {
    Spi::get_one_with_args::<i64>(APPEND, &[session_id.into(), role.into(), content.into(), JsonB(metadata).into()])
        .no_row_is_none()
        .or_raise("appending to the session");
}
