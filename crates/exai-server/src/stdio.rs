//! MCP over stdio, with a line filter in front of the SDK: a line that is not JSON gets the
//! JSON-RPC `-32700 Parse error` reply the specification asks for (the SDK drops such lines
//! silently), an oversized line gets `-32600`, and the server keeps serving either way.
//! stdout carries only protocol lines; logs go to stderr and the log file.

use std::sync::Arc;

use rmcp::{ServerHandler, ServiceExt};
use tokio::io::{
    AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader, BufWriter,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::state::AppState;

pub mod fuzz;

const PIPE_CAPACITY: usize = 1 << 20;

fn error_line(code: i64, message: &str) -> String {
    let v = serde_json::json!({
        "jsonrpc": "2.0",
        "id": null,
        "error": { "code": code, "message": message },
    });
    format!("{v}\n")
}

enum Line {
    Data(Vec<u8>),
    TooLong(usize),
    Eof,
}

/// Read one `\n`-terminated line, never holding more than `cap` bytes of it.
async fn read_capped<R: AsyncBufRead + Unpin>(reader: &mut R, cap: usize) -> std::io::Result<Line> {
    let mut line = Vec::new();
    let mut total = 0usize;
    loop {
        let buf = reader.fill_buf().await?;
        if buf.is_empty() {
            return Ok(if total == 0 {
                Line::Eof
            } else if total > cap {
                Line::TooLong(total)
            } else {
                Line::Data(line)
            });
        }
        let (chunk, done) = match buf.iter().position(|b| *b == b'\n') {
            Some(i) => (&buf[..=i], true),
            None => (buf, false),
        };
        total += chunk.len();
        if total <= cap + 1 {
            line.extend_from_slice(chunk);
        } else {
            line = Vec::new();
        }
        let n = chunk.len();
        reader.consume(n);
        if done {
            return Ok(if total > cap + 1 {
                Line::TooLong(total - 1)
            } else {
                Line::Data(line)
            });
        }
    }
}

/// Copy client lines to the SDK, answering the ones it cannot take.
async fn filter_input<R, W>(
    input: R,
    mut to_sdk: W,
    replies: mpsc::Sender<String>,
    cap: usize,
    stop: CancellationToken,
) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut reader = BufReader::with_capacity(64 * 1024, input);
    loop {
        let line = tokio::select! {
            line = read_capped(&mut reader, cap) => line?,
            () = stop.cancelled() => Line::Eof,
        };
        match line {
            Line::Eof => return to_sdk.shutdown().await,
            Line::TooLong(n) => {
                tracing::warn!(bytes = n, cap, "discarded an oversized message");
                let _ = replies
                    .send(error_line(
                        -32600,
                        &format!("message of {n} bytes exceeds the {cap}-byte limit (server.max_body_bytes)"),
                    ))
                    .await;
            }
            Line::Data(line) => {
                let trimmed = line.trim_ascii();
                if trimmed.is_empty() {
                    continue;
                }
                // Parsed in full: skipping over values (`IgnoredAny`) lets through invalid UTF-8
                // in strings, lone surrogates and nesting past the parser's depth limit, which
                // the SDK then drops without an answer.
                if let Err(e) = serde_json::from_slice::<serde_json::Value>(trimmed) {
                    tracing::warn!("malformed JSON from client: {e}");
                    let _ = replies
                        .send(error_line(-32700, &format!("Parse error: {e}")))
                        .await;
                    continue;
                }
                to_sdk.write_all(trimmed).await?;
                to_sdk.write_all(b"\n").await?;
            }
        }
    }
}

/// Write whole lines from the SDK and from the filter to the client, never interleaved.
async fn merge_output<R, W>(
    from_sdk: R,
    mut replies: mpsc::Receiver<String>,
    output: W,
) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    // A line and its newline leave in one write.
    let mut output = BufWriter::new(output);
    let mut lines = BufReader::new(from_sdk).lines();
    let mut replies_open = true;
    loop {
        tokio::select! {
            line = lines.next_line() => match line? {
                Some(line) => {
                    output.write_all(line.as_bytes()).await?;
                    output.write_all(b"\n").await?;
                    output.flush().await?;
                }
                None => return output.flush().await,
            },
            reply = replies.recv(), if replies_open => match reply {
                Some(reply) => {
                    output.write_all(reply.as_bytes()).await?;
                    output.flush().await?;
                }
                None => replies_open = false,
            },
        }
    }
}

/// The process's stdin, as `serve` and `shim` read it.
pub type Input = Box<dyn AsyncRead + Unpin + Send>;
/// The process's stdout, as `serve` and `shim` write it.
pub type Output = Box<dyn AsyncWrite + Unpin + Send>;

/// stdin and stdout for `serve` and `shim`. When they are pipes or sockets (as MCP clients start
/// servers: Python's subprocess gives pipes, Node's child_process socket pairs), they are read and
/// written through the runtime's event loop; tokio's own stdin and stdout hand every read and
/// every write to a blocking thread, two thread switches per message. A terminal, a file, or a
/// pipe or socket that stderr shares (`2>&1`: made non-blocking, it would make log writes fail
/// under back-pressure) keep tokio's.
pub fn standard_streams() -> (Input, Output) {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    let (stdin, stdout, stderr) = (std::io::stdin(), std::io::stdout(), std::io::stderr());
    let stderr = duplicate(stderr.as_fd()).map(|(_, m)| (m.dev(), m.ino()));
    let own = |fd| duplicate(fd).filter(|(_, m)| Some((m.dev(), m.ino())) != stderr);
    let input = own(stdin.as_fd())
        .and_then(event_driven_reader)
        .unwrap_or_else(|| Box::new(tokio::io::stdin()));
    let output = own(stdout.as_fd())
        .and_then(event_driven_writer)
        .unwrap_or_else(|| Box::new(tokio::io::stdout()));
    (input, output)
}

/// A duplicate of a standard descriptor, with its file type and identity.
fn duplicate(fd: std::os::fd::BorrowedFd<'_>) -> Option<(std::fs::File, std::fs::Metadata)> {
    let file = std::fs::File::from(fd.try_clone_to_owned().ok()?);
    let meta = file.metadata().ok()?;
    Some((file, meta))
}

fn event_driven_reader((file, meta): (std::fs::File, std::fs::Metadata)) -> Option<Input> {
    use std::os::unix::fs::FileTypeExt;
    if meta.file_type().is_fifo() {
        let pipe = tokio::net::unix::pipe::Receiver::from_file(file).ok()?;
        return Some(Box::new(pipe));
    }
    let socket = event_driven_socket(file, &meta)?;
    Some(Box::new(socket))
}

fn event_driven_writer((file, meta): (std::fs::File, std::fs::Metadata)) -> Option<Output> {
    use std::os::unix::fs::FileTypeExt;
    if meta.file_type().is_fifo() {
        let pipe = tokio::net::unix::pipe::Sender::from_file(file).ok()?;
        return Some(Box::new(pipe));
    }
    let socket = event_driven_socket(file, &meta)?;
    Some(Box::new(socket))
}

fn event_driven_socket(
    file: std::fs::File,
    meta: &std::fs::Metadata,
) -> Option<tokio::net::UnixStream> {
    use std::os::unix::fs::FileTypeExt;
    if !meta.file_type().is_socket() {
        return None;
    }
    let socket = std::os::unix::net::UnixStream::from(std::os::fd::OwnedFd::from(file));
    socket.set_nonblocking(true).ok()?;
    tokio::net::UnixStream::from_std(socket).ok()
}

/// Serve one MCP session on the given byte streams until the client closes its side or
/// `shutdown` resolves; then let calls in flight finish within the grace period.
pub async fn serve<H, R, W>(
    handler: H,
    state: Arc<AppState>,
    input: R,
    output: W,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), StdioError>
where
    H: ServerHandler,
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let cap = usize::try_from(state.loaded.config.server.max_body_bytes).unwrap_or(usize::MAX);
    let (sdk_in, filter_out) = tokio::io::duplex(PIPE_CAPACITY);
    let (sdk_out, merge_in) = tokio::io::duplex(PIPE_CAPACITY);
    let (tx, rx) = mpsc::channel(64);
    let stop_input = CancellationToken::new();
    let filter = tokio::spawn(filter_input(input, filter_out, tx, cap, stop_input.clone()));
    let merger = tokio::spawn(merge_output(merge_in, rx, output));

    let (sdk_read, _) = tokio::io::split(sdk_in);
    let (_, sdk_write) = tokio::io::split(sdk_out);
    let running = handler
        .serve((sdk_read, sdk_write))
        .await
        .map_err(|e| StdioError(e.to_string()))?;
    let ct = running.cancellation_token();
    let mut waiting = Box::pin(running.waiting());
    let ended = tokio::select! {
        r = &mut waiting => Some(r),
        () = shutdown => None,
    };
    let ended = match ended {
        Some(r) => r,
        None => {
            // Stop reading: the SDK then finishes the calls in flight, sends their answers
            // and closes, as it does when a client closes stdin.
            state.start_draining();
            stop_input.cancel();
            let grace = state.loaded.timeouts.shutdown_grace();
            tracing::info!(
                inflight = state.inflight(),
                "stopping: finishing calls in flight"
            );
            match tokio::time::timeout(grace, &mut waiting).await {
                Ok(r) => r,
                Err(_) => {
                    tracing::warn!("grace period over; ending the remaining calls");
                    ct.cancel();
                    waiting.await
                }
            }
        }
    };
    if let Err(e) = ended {
        tracing::warn!("MCP session ended with an error: {e}");
    }
    filter.abort();
    // Let the last responses reach the client before returning.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), merger).await;
    Ok(())
}

#[derive(Debug, thiserror::Error)]
#[error("MCP session failed to start: {0}")]
pub struct StdioError(String);

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn capped_reader_splits_and_flags_long_lines() {
        let data = b"short\nthis line is far too long\nok\nlast".to_vec();
        let mut r = BufReader::with_capacity(4, &data[..]);
        let mut out = Vec::new();
        loop {
            match read_capped(&mut r, 10).await.unwrap() {
                Line::Eof => break,
                Line::Data(l) => out.push(String::from_utf8(l).unwrap()),
                Line::TooLong(n) => out.push(format!("<{n}>")),
            }
        }
        assert_eq!(out, vec!["short\n", "<25>", "ok\n", "last"]);
    }

    /// Fuzzing finding (`line_filter`): lines the SDK cannot parse (invalid UTF-8 in a string, a
    /// lone surrogate, nesting deeper than serde_json's limit) were passed on as JSON, and the
    /// SDK dropped them without an answer. Each now gets a -32700 reply.
    #[tokio::test]
    async fn lines_the_sdk_cannot_parse_are_answered() {
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        let lines: Vec<Vec<u8>> = vec![
            b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"params\":{\"x\":\"\xff\"}}"
                .to_vec(),
            br#"{"jsonrpc":"2.0","id":2,"method":"ping","params":{"x":"\ud800"}}"#.to_vec(),
            deep.into_bytes(),
        ];
        let mut input = lines.join(&b'\n');
        input.extend_from_slice(b"\n{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"ping\"}\n");
        let mut to_sdk = Vec::new();
        let (tx, mut rx) = mpsc::channel(8);
        filter_input(
            &input[..],
            &mut to_sdk,
            tx,
            1 << 20,
            CancellationToken::new(),
        )
        .await
        .unwrap();
        assert_eq!(
            to_sdk,
            b"{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"ping\"}\n"
        );
        for _ in &lines {
            let reply = rx.try_recv().unwrap();
            assert!(reply.contains("-32700"), "{reply}");
        }
        assert!(rx.try_recv().is_err());
    }
}
