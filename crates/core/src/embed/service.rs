//! The embedding service: one process holds the model and embeds for every other one.
//!
//! A server ([`serve`]) listens on a Unix socket; clients ([`ServiceEmbedder`], an [`Embedder`]) send
//! texts and read vectors back. In the extension the server runs in one background worker per
//! PostgreSQL server and the socket lives in the data directory (mode 0600, so only the server's own
//! processes reach it); backends and the ingestion worker are the clients. One model in memory instead
//! of one per backend, and requests that arrive together (concurrent searches, the ingestion worker)
//! are embedded together.
//!
//! Threads: one accepts connections, one per open connection reads its request and writes its answer,
//! and one runs the model: it takes every request waiting (of one kind, up to [`BATCH_TEXTS`] texts)
//! and embeds them in one call. None of them calls Postgres.
//!
//! Wire format (little-endian; one request and one answer per connection):
//! - request: `RGE1`, kind and model (u8: bit 0 the kind, 0 document, 1 query; bits 1-7 the index of
//!   the model among those the service was started with, 0 = all-MiniLM-L6-v2), count (u32), then per
//!   text its byte length (u32) and its UTF-8 bytes. At most [`MAX_REQUEST_TEXTS`] texts and [`MAX_REQUEST_BYTES`] bytes: a
//!   larger request is refused with an error answer, and the server goes on.
//! - answer: status (u8: 0 ok, 1 error); ok: count (u32), dimension (u32), count × dimension f32;
//!   error: byte length (u32) and a UTF-8 message.
//!
//! The client waits in steps of at most [`crate::interrupt::POLL_STEP`], calling its cancel hook
//! between steps, for at most its timeout; a server that is not there (yet) is waited for within the
//! same timeout (the postmaster restarts the service), then a clear error.

use super::builtin::{BUILTIN_DIMENSIONS, BUILTIN_MODEL_ID};
use super::encoder::WordPieces;
use super::provider::{EmbedError, Embedder, InputKind};
use crate::interrupt::{Interrupt, POLL_STEP};
use std::io::{self, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

const MAGIC: &[u8; 4] = b"RGE1";
/// The answer of a service that stops before it could embed a request: the client sends it again.
const STOPPING: &str = "the embedding service is stopping";
/// Most texts in one request (clients send at most their batch size, 32 by default).
pub const MAX_REQUEST_TEXTS: usize = 1024;
/// Most bytes of text in one request.
pub const MAX_REQUEST_BYTES: usize = 16 << 20;
/// Most texts the model thread embeds in one call, across requests.
pub const BATCH_TEXTS: usize = 128;
/// How long a connection may take to send its request before the server drops it.
const READ_DEADLINE: Duration = Duration::from_secs(30);

/// Counters of a running server (for tests and logs).
#[derive(Default)]
pub struct Stats {
    pub requests: AtomicU64,
    pub model_calls: AtomicU64,
    pub refused: AtomicU64,
}

struct Job {
    kind: InputKind,
    /// Index into the service's models.
    model: usize,
    texts: Vec<String>,
    reply: Sender<Result<Vec<Vec<f32>>, String>>,
}

/// A running server; dropping the handle does not stop it, [`Server::stop`] does.
pub struct Server {
    stop: Arc<AtomicBool>,
    pub stats: Arc<Stats>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl Server {
    /// Stop accepting, finish the model's current call, and join the server's threads.
    pub fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// What loads a model, on a model thread, when the first request for it arrives (a server whose
/// databases use an HTTP provider never loads the built-in model; one that asks for one model never
/// loads the other).
pub type Loader = Box<dyn FnOnce() -> Result<Arc<dyn Embedder>, String> + Send>;

/// Serve on `listener` until [`Server::stop`]. If `load` fails, every request is answered with its
/// message: callers get a clear error, and the service does not exit and restart in a loop.
pub fn serve(listener: UnixListener, load: Loader) -> io::Result<Server> {
    serve_with(listener, load, 1)
}

/// [`serve`] with `model_threads` threads taking requests (each embeds what is waiting when it takes
/// its turn): small batches of short texts barely use a second core inside one forward pass, while two
/// passes side by side do. The model is loaded once and shared (`Embedder` is `Sync`).
pub fn serve_with(listener: UnixListener, load: Loader, model_threads: usize) -> io::Result<Server> {
    serve_models(listener, vec![load], model_threads)
}

/// [`serve_with`] for several models: a request names one by its index in `loads`; each is loaded on
/// its first request.
pub fn serve_models(listener: UnixListener, loads: Vec<Loader>, model_threads: usize) -> io::Result<Server> {
    listener.set_nonblocking(false)?;
    let stop = Arc::new(AtomicBool::new(false));
    let stats = Arc::new(Stats::default());
    let (jobs_tx, jobs_rx) = mpsc::channel::<Job>();
    let models = loads.into_iter().map(|l| (Mutex::new(Some(l)), std::sync::OnceLock::new())).collect();
    let shared = Arc::new(Shared { jobs: Mutex::new(jobs_rx), models });
    let mut threads = Vec::new();
    for i in 0..model_threads.max(1) {
        let (stop, stats, shared) = (Arc::clone(&stop), Arc::clone(&stats), Arc::clone(&shared));
        threads.push(
            thread::Builder::new()
                .name(format!("ragbench-embed-model-{i}"))
                .spawn(move || run_model(&shared, &stop, &stats))?,
        );
    }
    // Blocking accept: a connection is taken the moment it arrives, and an idle service sleeps. The accept
    // thread is not joined by `stop` (nothing wakes a blocked accept); once stopped, a connection it still
    // takes is answered "stopping" and the client tries the next service. It ends with the process.
    {
        let (stop, stats, models) = (Arc::clone(&stop), Arc::clone(&stats), shared.models.len());
        thread::Builder::new().name("ragbench-embed-accept".into()).spawn(move || {
            for stream in listener.incoming() {
                match stream {
                    Ok(stream) => {
                        let tx = jobs_tx.clone();
                        let stats = Arc::clone(&stats);
                        // One thread per connection: a slow client never holds up the others.
                        let _ = thread::Builder::new()
                            .name("ragbench-embed-conn".into())
                            .spawn(move || handle(stream, tx, &stats, models));
                    }
                    Err(_) if stop.load(Ordering::SeqCst) => return,
                    Err(_) => thread::sleep(Duration::from_millis(50)),
                }
            }
        })?;
    }
    Ok(Server { stop, stats, threads })
}

/// A model's loader (run once) and the loaded model.
type ModelSlot = (Mutex<Option<Loader>>, std::sync::OnceLock<Result<Arc<dyn Embedder>, String>>);

/// What the model threads share: the queue of requests and the models.
struct Shared {
    jobs: Mutex<Receiver<Job>>,
    models: Vec<ModelSlot>,
}

impl Shared {
    fn model(&self, index: usize) -> &Result<Arc<dyn Embedder>, String> {
        let Some((load, model)) = self.models.get(index) else {
            static UNKNOWN: std::sync::OnceLock<Result<Arc<dyn Embedder>, String>> = std::sync::OnceLock::new();
            return UNKNOWN.get_or_init(|| Err("the embedding service has no such model".into()));
        };
        model.get_or_init(|| {
            let load = load.lock().unwrap_or_else(|p| p.into_inner()).take();
            load.map_or_else(|| Err("the model loader ran already".into()), |l| l())
        })
    }

    /// The next request, and every other one already waiting of the same kind and model (up to
    /// BATCH_TEXTS texts); `held` keeps one that differs for this thread's next turn. None on timeout.
    fn next_batch(&self, held: &mut Option<Job>) -> Result<Option<Vec<Job>>, ()> {
        let jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        let first = match held.take() {
            Some(j) => j,
            None => match jobs.recv_timeout(Duration::from_millis(100)) {
                Ok(j) => j,
                Err(RecvTimeoutError::Timeout) => return Ok(None),
                Err(RecvTimeoutError::Disconnected) => return Err(()),
            },
        };
        let mut batch = vec![first];
        let mut count = batch[0].texts.len();
        while count < BATCH_TEXTS {
            match jobs.try_recv() {
                Ok(j) if j.kind == batch[0].kind && j.model == batch[0].model => {
                    count += j.texts.len();
                    batch.push(j);
                }
                Ok(j) => {
                    *held = Some(j);
                    break;
                }
                Err(_) => break,
            }
        }
        Ok(Some(batch))
    }
}

fn run_model(shared: &Shared, stop: &AtomicBool, stats: &Stats) {
    let mut held: Option<Job> = None;
    while !stop.load(Ordering::SeqCst) {
        let batch = match shared.next_batch(&mut held) {
            Ok(Some(b)) => b,
            Ok(None) => continue,
            Err(()) => return,
        };
        let model = match shared.model(batch[0].model) {
            Ok(m) => m,
            Err(msg) => {
                for j in batch {
                    let _ = j.reply.send(Err(msg.clone()));
                }
                continue;
            }
        };
        let texts: Vec<&str> = batch.iter().flat_map(|j| j.texts.iter().map(String::as_str)).collect();
        stats.model_calls.fetch_add(1, Ordering::SeqCst);
        match model.embed(&texts, batch[0].kind) {
            Ok(mut vectors) if vectors.len() == texts.len() => {
                for j in batch.into_iter().rev() {
                    let mine = vectors.split_off(vectors.len() - j.texts.len());
                    let _ = j.reply.send(Ok(mine));
                }
            }
            Ok(vectors) => {
                let msg = format!("the model returned {} vectors for {} texts", vectors.len(), texts.len());
                for j in batch {
                    let _ = j.reply.send(Err(msg.clone()));
                }
            }
            Err(e) => {
                let msg = e.to_string();
                for j in batch {
                    let _ = j.reply.send(Err(msg.clone()));
                }
            }
        }
    }
}

fn handle(mut stream: UnixStream, jobs: Sender<Job>, stats: &Stats, models: usize) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(READ_DEADLINE));
    let answer = match read_request(&mut stream, models) {
        Ok((kind, model, texts)) => {
            stats.requests.fetch_add(1, Ordering::SeqCst);
            if texts.is_empty() {
                Ok(Vec::new())
            } else {
                let (tx, rx) = mpsc::channel();
                match jobs.send(Job { kind, model, texts, reply: tx }) {
                    Ok(()) => rx.recv().unwrap_or_else(|_| Err(STOPPING.into())),
                    Err(_) => Err(STOPPING.into()),
                }
            }
        }
        Err(RequestError::Io) => return,
        Err(RequestError::Refused(msg)) => {
            stats.refused.fetch_add(1, Ordering::SeqCst);
            Err(msg)
        }
    };
    // A client that gave up (cancelled) has closed its end: the write fails and nothing else happens.
    let _ = stream.write_all(&encode_answer(&answer));
    if answer.is_err() {
        // Let the client read the refusal: closing with its unread bytes pending would reset the
        // connection before it sees the answer. Discard a little of what it still sends, briefly.
        let _ = stream.shutdown(std::net::Shutdown::Write);
        let _ = stream.set_read_timeout(Some(Duration::from_millis(100)));
        let mut sink = [0u8; 64 * 1024];
        let _ = stream.read(&mut sink);
    }
}

enum RequestError {
    Io,
    Refused(String),
}

fn read_u32(r: &mut impl Read) -> Result<u32, RequestError> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b).map_err(|_| RequestError::Io)?;
    Ok(u32::from_le_bytes(b))
}

fn read_request(r: &mut impl Read, models: usize) -> Result<(InputKind, usize, Vec<String>), RequestError> {
    let mut head = [0u8; 5];
    r.read_exact(&mut head).map_err(|_| RequestError::Io)?;
    if &head[..4] != MAGIC {
        return Err(RequestError::Refused("not an embedding service request".into()));
    }
    let kind = if head[4] & 1 == 1 { InputKind::Query } else { InputKind::Document };
    let model = (head[4] >> 1) as usize;
    if model >= models {
        return Err(RequestError::Refused(format!("model {model} is not one of the service's {models}")));
    }
    let count = read_u32(r)? as usize;
    if count > MAX_REQUEST_TEXTS {
        return Err(RequestError::Refused(format!("{count} texts in one request; at most {MAX_REQUEST_TEXTS}")));
    }
    let mut texts = Vec::with_capacity(count);
    let mut total = 0usize;
    for _ in 0..count {
        let len = read_u32(r)? as usize;
        total = total.saturating_add(len);
        if total > MAX_REQUEST_BYTES {
            return Err(RequestError::Refused(format!("a request of more than {MAX_REQUEST_BYTES} bytes")));
        }
        let mut buf = vec![0u8; len];
        r.read_exact(&mut buf).map_err(|_| RequestError::Io)?;
        texts.push(String::from_utf8(buf).map_err(|_| RequestError::Refused("a text is not UTF-8".into()))?);
    }
    Ok((kind, model, texts))
}

fn encode_request(texts: &[&str], kind: InputKind, model: u8) -> Vec<u8> {
    let mut out = Vec::with_capacity(9 + texts.iter().map(|t| 4 + t.len()).sum::<usize>());
    out.extend_from_slice(MAGIC);
    out.push((model << 1) | u8::from(kind == InputKind::Query));
    out.extend_from_slice(&(texts.len() as u32).to_le_bytes());
    for t in texts {
        out.extend_from_slice(&(t.len() as u32).to_le_bytes());
        out.extend_from_slice(t.as_bytes());
    }
    out
}

fn encode_answer(answer: &Result<Vec<Vec<f32>>, String>) -> Vec<u8> {
    match answer {
        Ok(vectors) => {
            let dim = vectors.first().map_or(0, Vec::len);
            let mut out = Vec::with_capacity(9 + vectors.len() * dim * 4);
            out.push(0);
            out.extend_from_slice(&(vectors.len() as u32).to_le_bytes());
            out.extend_from_slice(&(dim as u32).to_le_bytes());
            for v in vectors {
                for x in v.iter().take(dim) {
                    out.extend_from_slice(&x.to_le_bytes());
                }
                // A shorter vector is padded so the answer stays well-formed; the client checks dimensions.
                for _ in v.len()..dim {
                    out.extend_from_slice(&0f32.to_le_bytes());
                }
            }
            out
        }
        Err(msg) => {
            let mut out = vec![1u8];
            out.extend_from_slice(&(msg.len() as u32).to_le_bytes());
            out.extend_from_slice(msg.as_bytes());
            out
        }
    }
}

/// A built-in model, reached through the service's socket. Same model id and dimensions as the model
/// the service runs: vectors from either path are interchangeable.
pub struct ServiceEmbedder {
    socket: PathBuf,
    timeout: Duration,
    batch: usize,
    /// The model's index among the service's models, its id and its dimensions.
    model: u8,
    model_id: &'static str,
    dims: usize,
    /// The model's folder, whose tokenizer sizes chunks exactly as the model counts (loaded on the first
    /// count: ingestion needs it, searches do not); without it, or if it cannot be loaded, the estimate.
    tokenizer: Option<(PathBuf, usize)>,
    words: std::sync::OnceLock<Option<WordPieces>>,
}

impl ServiceEmbedder {
    /// all-MiniLM-L6-v2 (the service's model 0). `timeout` bounds one request, waiting for a service
    /// that is restarting included.
    pub fn new(socket: impl AsRef<Path>, timeout: Duration, batch: usize) -> Self {
        Self::for_model(socket, timeout, batch, 0, BUILTIN_MODEL_ID, BUILTIN_DIMENSIONS)
    }

    /// The service's model number `model` (at most 127), whose id and dimensions the caller knows.
    pub fn for_model(
        socket: impl AsRef<Path>,
        timeout: Duration,
        batch: usize,
        model: u8,
        model_id: &'static str,
        dims: usize,
    ) -> Self {
        let (socket, batch) = (socket.as_ref().to_path_buf(), batch.clamp(1, MAX_REQUEST_TEXTS));
        let (tokenizer, words) = (None, std::sync::OnceLock::new());
        ServiceEmbedder { socket, timeout, batch, model: model.min(127), model_id, dims, tokenizer, words }
    }

    /// Count tokens with the `tokenizer.json` of `model_dir` (truncation at `max_tokens` as the model).
    pub fn with_tokenizer(mut self, model_dir: impl AsRef<Path>, max_tokens: usize) -> Self {
        self.tokenizer = Some((model_dir.as_ref().to_path_buf(), max_tokens));
        self
    }

    fn error(&self, detail: impl Into<String>) -> EmbedError {
        EmbedError::Service { socket: self.socket.display().to_string(), detail: detail.into() }
    }

    fn connect(&self, deadline: Instant, interrupt: Interrupt<'_>) -> Result<UnixStream, EmbedError> {
        loop {
            interrupt();
            match UnixStream::connect(&self.socket) {
                Ok(s) => return Ok(s),
                Err(e) if Instant::now() >= deadline => {
                    return Err(self.error(format!(
                        "the embedding service is not running ({e}); waited {:.1} s",
                        self.timeout.as_secs_f64()
                    )))
                }
                Err(_) => thread::sleep(POLL_STEP),
            }
        }
    }

    /// One request, sent again (embedding has no side effect) if the service went away before it
    /// answered, for instance while it restarts: within the same timeout.
    fn request(&self, texts: &[&str], kind: InputKind, interrupt: Interrupt<'_>) -> Result<Vec<Vec<f32>>, EmbedError> {
        let deadline = Instant::now() + self.timeout;
        let request = encode_request(texts, kind, self.model);
        loop {
            match self.attempt(&request, deadline, interrupt) {
                Err(Attempt::Lost(_)) if Instant::now() < deadline => thread::sleep(POLL_STEP),
                Err(Attempt::Lost(e)) | Err(Attempt::Failed(e)) => return Err(e),
                Ok(v) => return Ok(v),
            }
        }
    }

    fn attempt(&self, request: &[u8], deadline: Instant, interrupt: Interrupt<'_>) -> Result<Vec<Vec<f32>>, Attempt> {
        let lost = |what: &str, e: &dyn std::fmt::Display| Attempt::Lost(self.error(format!("{what}: {e}")));
        let mut stream = self.connect(deadline, interrupt).map_err(Attempt::Failed)?;
        if let Err(e) = stream.write_all(request) {
            // A service that refused the request closes early: its answer says why.
            let _ = stream.set_read_timeout(Some(POLL_STEP));
            let mut answer = Vec::new();
            let _ = stream.read_to_end(&mut answer);
            if let Ok(Some(done)) = parse_answer(&answer) {
                return done.map_err(|m| Attempt::Failed(self.error(m)));
            }
            return Err(lost("sending the request failed", &e));
        }
        stream.set_read_timeout(Some(POLL_STEP)).map_err(|e| Attempt::Failed(self.error(e.to_string())))?;
        let mut answer = Vec::new();
        let mut buf = [0u8; 64 * 1024];
        loop {
            if let Some(done) = parse_answer(&answer).map_err(|m| Attempt::Failed(self.error(m)))? {
                return done.map_err(|m| {
                    let e = self.error(m.clone());
                    if m == STOPPING { Attempt::Lost(e) } else { Attempt::Failed(e) }
                });
            }
            interrupt();
            if Instant::now() >= deadline {
                let waited = self.timeout.as_secs_f64();
                return Err(Attempt::Failed(self.error(format!("no answer within {waited:.1} s"))));
            }
            match stream.read(&mut buf) {
                Ok(0) => return Err(lost("reading the answer failed", &"the service closed the connection")),
                Ok(n) => answer.extend_from_slice(&buf[..n]),
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted) => {}
                Err(e) => return Err(lost("reading the answer failed", &e)),
            }
        }
    }
}

/// How one attempt ended without an answer: `Lost` (the service went away: try again) or `Failed`.
enum Attempt {
    Lost(EmbedError),
    Failed(EmbedError),
}

/// Consecutive runs of at most `batch` texts and [`MAX_REQUEST_BYTES`] bytes (a larger text alone).
fn split_requests<'a, 'b>(texts: &'b [&'a str], batch: usize) -> Vec<&'b [&'a str]> {
    let mut parts = Vec::new();
    let (mut start, mut bytes) = (0, 0usize);
    for (i, t) in texts.iter().enumerate() {
        if i > start && (i - start >= batch || bytes + t.len() > MAX_REQUEST_BYTES) {
            parts.push(&texts[start..i]);
            start = i;
            bytes = 0;
        }
        bytes += t.len();
    }
    if start < texts.len() {
        parts.push(&texts[start..]);
    }
    parts
}

/// `Ok(None)`: incomplete; `Ok(Some(answer))`: complete; `Err`: malformed.
#[allow(clippy::type_complexity)]
fn parse_answer(b: &[u8]) -> Result<Option<Result<Vec<Vec<f32>>, String>>, String> {
    let u32_at = |i: usize| b.get(i..i + 4).map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]) as usize);
    match b.first() {
        None => Ok(None),
        Some(0) => {
            let (Some(n), Some(dim)) = (u32_at(1), u32_at(5)) else { return Ok(None) };
            let need = n.checked_mul(dim).and_then(|x| x.checked_mul(4)).and_then(|x| x.checked_add(9));
            let need = need.ok_or("malformed answer (size overflows)")?;
            if n > MAX_REQUEST_TEXTS || dim > 65_536 {
                return Err(format!("malformed answer ({n} vectors of dimension {dim})"));
            }
            if b.len() < need {
                return Ok(None);
            }
            let floats: Vec<f32> =
                b[9..need].chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
            Ok(Some(Ok(if dim == 0 { vec![Vec::new(); n] } else { floats.chunks(dim).map(<[f32]>::to_vec).collect() })))
        }
        Some(1) => {
            let Some(len) = u32_at(1) else { return Ok(None) };
            if b.len() < 5 + len {
                return Ok(None);
            }
            Ok(Some(Err(String::from_utf8_lossy(&b[5..5 + len]).into_owned())))
        }
        Some(s) => Err(format!("malformed answer (status byte {s})")),
    }
}

impl Embedder for ServiceEmbedder {
    fn model_id(&self) -> &str {
        self.model_id
    }

    fn dimensions(&self) -> Option<usize> {
        Some(self.dims)
    }

    /// Requests of at most the batch size and [`MAX_REQUEST_BYTES`] each; the cancel hook runs while
    /// each is waited for.
    /// The model's own word-piece count (as the backend path counts), so chunks are the same size on
    /// both paths; the word estimate when there is no tokenizer.
    fn count_tokens(&self, text: &str) -> usize {
        let words = self.words.get_or_init(|| {
            let (dir, max) = self.tokenizer.as_ref()?;
            WordPieces::load(dir, *max).ok()
        });
        match words {
            Some(w) => w.count(text),
            None => super::provider::approx_token_count(text),
        }
    }

    fn embed_with(&self, texts: &[&str], kind: InputKind, interrupt: Interrupt<'_>) -> Result<Vec<Vec<f32>>, EmbedError> {
        let mut out = Vec::with_capacity(texts.len());
        for part in split_requests(texts, self.batch) {
            if part.len() == 1 && part[0].len() > MAX_REQUEST_BYTES {
                return Err(self.error(format!(
                    "a text of {} bytes is larger than the embedding service accepts ({MAX_REQUEST_BYTES} bytes)",
                    part[0].len()
                )));
            }
            let vectors = self.request(part, kind, interrupt)?;
            if vectors.len() != part.len() {
                return Err(EmbedError::CountMismatch { model: self.model_id.into(), expected: part.len(), got: vectors.len() });
            }
            if let Some(v) = vectors.iter().find(|v| v.len() != self.dims) {
                return Err(EmbedError::DimensionMismatch {
                    model: self.model_id.into(),
                    expected: self.dims,
                    got: v.len(),
                });
            }
            out.extend(vectors);
        }
        Ok(out)
    }
}

#[cfg(test)]
#[path = "service_tests.rs"]
mod tests;
