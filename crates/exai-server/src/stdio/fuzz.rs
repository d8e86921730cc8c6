//! Entry point of the `line_filter` fuzz target (`fuzz/`): the line filter `exai serve` puts in
//! front of the SDK ([`super::read_capped`], [`super::filter_input`]) on arbitrary client bytes
//! with a small cap. `tests/fuzz_corpus.rs` replays the committed corpus through the same
//! function, so a finding stays fixed in every build.
//!
//! What the filter promises, checked on every input: it ends; it never holds more than `cap + 1`
//! bytes of a line; every line that is not blank is either passed on (trimmed, and valid JSON,
//! since the SDK silently drops what it cannot parse) or answered with exactly one error line
//! (`-32700` unparsable, `-32600` too long); what it passes on is exactly the valid lines, in
//! order.

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, BufReader, ReadBuf};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Line, filter_input, read_capped};

thread_local! {
    static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap_or_else(|e| panic!("cannot start a runtime: {e}"));
}

/// Client bytes arriving a few at a time, with a pause before every other read, so lines are
/// split across reads and the reader must resume where it stopped.
struct Trickle<'a> {
    data: &'a [u8],
    piece: usize,
    stall: bool,
}

impl AsyncRead for Trickle<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.stall {
            self.stall = false;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        self.stall = true;
        let n = self.piece.min(self.data.len()).min(buf.remaining());
        let (head, tail) = self.data.split_at(n);
        buf.put_slice(head);
        self.data = tail;
        Poll::Ready(Ok(()))
    }
}

/// What the filter must do with one line (its bytes without the newline).
#[derive(Debug, PartialEq)]
enum Expected {
    Forward(Vec<u8>),
    Reply { code: i64, bytes: usize },
}

fn expected(data: &[u8], cap: usize) -> Vec<Expected> {
    data.split_inclusive(|b| *b == b'\n')
        .filter_map(|segment| {
            let line = segment.strip_suffix(b"\n").unwrap_or(segment);
            if line.len() > cap {
                return Some(Expected::Reply {
                    code: -32600,
                    bytes: line.len(),
                });
            }
            let trimmed = line.trim_ascii();
            if trimmed.is_empty() {
                None
            } else if serde_json::from_slice::<serde_json::Value>(trimmed).is_ok() {
                Some(Expected::Forward(trimmed.to_vec()))
            } else {
                Some(Expected::Reply {
                    code: -32700,
                    bytes: line.len(),
                })
            }
        })
        .collect()
}

/// The first byte picks the cap (1 to 64 bytes), the second how many bytes arrive per read and
/// the reader's buffer size; the rest is what the client sends.
pub fn line_filter(data: &[u8]) {
    let [a, b, input @ ..] = data else {
        return;
    };
    let cap = 1 + usize::from(*a % 64);
    let piece = 1 + usize::from(*b % 16);
    let want = expected(input, cap);
    RUNTIME.with(|rt| {
        rt.block_on(async {
            check_reader(input, cap, piece).await;
            check_filter(input, cap, piece, &want).await;
        });
    });
}

/// `read_capped` alone: the lines it returns are the input's, none longer than `cap + 1` bytes.
async fn check_reader(input: &[u8], cap: usize, piece: usize) {
    let source = Trickle {
        data: input,
        piece,
        stall: false,
    };
    let mut reader = BufReader::with_capacity(piece, source);
    let mut segments = input.split_inclusive(|b| *b == b'\n');
    // Each call consumes at least one byte or ends: one more call than bytes at most.
    for _ in 0..=input.len() {
        let line = read_capped(&mut reader, cap)
            .await
            .unwrap_or_else(|e| panic!("reading from memory failed: {e}"));
        let segment = segments.next();
        match (line, segment) {
            (Line::Eof, None) => return,
            (Line::Data(line), Some(segment)) => {
                assert!(
                    line.len() <= cap + 1,
                    "held {} bytes, cap {cap}",
                    line.len()
                );
                assert_eq!(line, segment);
            }
            (Line::TooLong(n), Some(segment)) => {
                let content = segment.strip_suffix(b"\n").unwrap_or(segment);
                assert_eq!(n, content.len());
                assert!(n > cap);
            }
            (line, segment) => panic!(
                "read {} where the input has {segment:?}",
                match line {
                    Line::Eof => "the end".to_string(),
                    Line::Data(d) => format!("{d:?}"),
                    Line::TooLong(n) => format!("a {n}-byte line"),
                }
            ),
        }
    }
    panic!("read_capped did not reach the end of {} bytes", input.len());
}

/// The whole filter: what reaches the SDK and what the client is answered.
async fn check_filter(input: &[u8], cap: usize, piece: usize, want: &[Expected]) {
    let source = Trickle {
        data: input,
        piece,
        stall: false,
    };
    let mut to_sdk = Vec::new();
    // Room for a reply per line: nothing reads the replies until the filter is done.
    let (tx, mut rx) = mpsc::channel(input.len() + 1);
    filter_input(source, &mut to_sdk, tx, cap, CancellationToken::new())
        .await
        .unwrap_or_else(|e| panic!("filtering from memory failed: {e}"));
    let mut replies = Vec::new();
    while let Ok(reply) = rx.try_recv() {
        replies.push(reply);
    }

    let forwarded: Vec<&[u8]> = to_sdk
        .split_inclusive(|b| *b == b'\n')
        .map(|l| {
            l.strip_suffix(b"\n")
                .unwrap_or_else(|| panic!("a line passed on without its newline: {l:?}"))
        })
        .collect();
    let want_forwarded: Vec<&[u8]> = want
        .iter()
        .filter_map(|e| match e {
            Expected::Forward(l) => Some(l.as_slice()),
            Expected::Reply { .. } => None,
        })
        .collect();
    assert_eq!(forwarded, want_forwarded);

    let want_replies: Vec<(i64, usize)> = want
        .iter()
        .filter_map(|e| match e {
            Expected::Reply { code, bytes } => Some((*code, *bytes)),
            Expected::Forward(_) => None,
        })
        .collect();
    assert_eq!(replies.len(), want_replies.len(), "{replies:?}");
    for (reply, (code, bytes)) in replies.iter().zip(want_replies) {
        let body = reply
            .strip_suffix('\n')
            .unwrap_or_else(|| panic!("a reply without its newline: {reply:?}"));
        assert!(!body.contains('\n'), "a reply of several lines: {reply:?}");
        let v: serde_json::Value = serde_json::from_str(body)
            .unwrap_or_else(|e| panic!("a reply that is not JSON ({e}): {reply:?}"));
        assert_eq!(v["jsonrpc"], "2.0");
        assert!(v["id"].is_null());
        assert_eq!(v["error"]["code"], code, "{reply:?}");
        if code == -32600 {
            let said = format!("message of {bytes} bytes exceeds the {cap}-byte limit");
            assert!(body.contains(&said), "{reply:?}");
        }
    }
}
