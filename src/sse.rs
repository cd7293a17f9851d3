//! Server-Sent Events framing, for filtering MCP streams event by event.
//!
//! Invariants:
//! - Events are cut only at their terminating blank line (`\n\n`, `\r\n\r\n`,
//!   `\r\r` or mixed), whatever the chunking; an event is never split and
//!   never merged with the next.
//! - Memory is bounded: an event larger than the cap is an error, not a
//!   growing buffer.
//! - Bytes of events that are not rewritten pass through unchanged.

/// Largest single event accepted (4 MiB).
pub const MAX_EVENT: usize = 4 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SseError {
    EventTooLarge,
}

/// Splits a byte stream into complete raw events.
#[derive(Default)]
pub struct EventSplitter {
    buf: Vec<u8>,
    /// Where to resume looking for a terminator.
    scanned: usize,
}

/// Finds the end (exclusive, including the blank line) of the first event.
fn event_end(buf: &[u8], from: usize) -> Option<usize> {
    // A blank line is a line terminator directly following another one.
    let mut i = from.saturating_sub(2);
    let mut prev_was_eol = false;
    while i < buf.len() {
        let (is_eol, len) = match buf[i] {
            b'\r' if buf.get(i + 1) == Some(&b'\n') => (true, 2),
            b'\r' if i + 1 == buf.len() => return None, // might be \r\n split across chunks
            b'\r' | b'\n' => (true, 1),
            _ => (false, 1),
        };
        if is_eol && prev_was_eol {
            return Some(i + len);
        }
        prev_was_eol = is_eol;
        i += len;
    }
    None
}

impl EventSplitter {
    pub fn new() -> EventSplitter {
        EventSplitter::default()
    }

    /// Feeds a chunk; returns every event it completed, in order.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<Vec<u8>>, SseError> {
        self.buf.extend_from_slice(chunk);
        let mut events = Vec::new();
        loop {
            // Re-scan from just before the old end so a terminator split
            // across chunks is found; scanning from the start would be
            // quadratic on large events.
            let from = if events.is_empty() { self.scanned } else { 0 };
            match event_end(&self.buf, from) {
                Some(end) => {
                    events.push(self.buf.drain(..end).collect());
                    self.scanned = 0;
                }
                None => {
                    self.scanned = self.buf.len();
                    break;
                }
            }
        }
        if self.buf.len() > MAX_EVENT {
            return Err(SseError::EventTooLarge);
        }
        Ok(events)
    }

    /// What is left at the end of the stream (an unterminated last event).
    pub fn finish(&mut self) -> Vec<u8> {
        self.scanned = 0;
        std::mem::take(&mut self.buf)
    }
}

fn lines(event: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = event;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let (line, next) = match rest.iter().position(|&b| b == b'\r' || b == b'\n') {
            Some(i) => {
                let skip = if rest[i] == b'\r' && rest.get(i + 1) == Some(&b'\n') { 2 } else { 1 };
                (&rest[..i], &rest[i + skip..])
            }
            None => (rest, &rest[rest.len()..]),
        };
        rest = next;
        Some(line)
    })
}

fn field(line: &[u8]) -> (&[u8], &[u8]) {
    match line.iter().position(|&b| b == b':') {
        Some(i) => {
            let value = &line[i + 1..];
            (&line[..i], value.strip_prefix(b" ").unwrap_or(value))
        }
        None => (line, &[]),
    }
}

/// The event's data: its `data:` lines joined with `\n`, or `None` when it
/// has none (a comment, or only `id:`/`retry:`).
pub fn data(event: &[u8]) -> Option<Vec<u8>> {
    let mut out: Option<Vec<u8>> = None;
    for line in lines(event) {
        let (name, value) = field(line);
        if name == b"data" && !line.starts_with(b":") {
            match &mut out {
                Some(buf) => {
                    buf.push(b'\n');
                    buf.extend_from_slice(value);
                }
                None => out = Some(value.to_vec()),
            }
        }
    }
    out
}

/// The event with its data replaced by `new_data`; every other line
/// (`id:`, `event:`, `retry:`, comments) is kept as it was.
pub fn with_data(event: &[u8], new_data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(event.len() + new_data.len());
    let mut wrote = false;
    for line in lines(event).filter(|l| !l.is_empty()) {
        let (name, _) = field(line);
        if name == b"data" && !line.starts_with(b":") {
            if !wrote {
                for part in new_data.split(|&b| b == b'\n') {
                    out.extend_from_slice(b"data: ");
                    out.extend_from_slice(part);
                    out.push(b'\n');
                }
                wrote = true;
            }
            continue;
        }
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    out.push(b'\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split_all(chunks: &[&[u8]]) -> (Vec<Vec<u8>>, Vec<u8>) {
        let mut s = EventSplitter::new();
        let mut events = Vec::new();
        for c in chunks {
            events.extend(s.push(c).unwrap());
        }
        (events, s.finish())
    }

    #[test]
    fn splits_at_blank_lines_whatever_the_chunking() {
        let stream = b"id: 1\ndata: {\"a\":1}\n\n: keep-alive\n\nevent: message\r\ndata: x\r\ndata: y\r\n\r\nretry: 5000\rdata: z\r\rdata: tail";
        let want = vec![
            b"id: 1\ndata: {\"a\":1}\n\n".to_vec(),
            b": keep-alive\n\n".to_vec(),
            b"event: message\r\ndata: x\r\ndata: y\r\n\r\n".to_vec(),
            b"retry: 5000\rdata: z\r\r".to_vec(),
        ];
        for i in 0..=stream.len() {
            for j in i..=stream.len() {
                let (events, rest) = split_all(&[&stream[..i], &stream[i..j], &stream[j..]]);
                assert_eq!(events, want, "split at {i},{j}");
                assert_eq!(rest, b"data: tail", "split at {i},{j}");
            }
        }
    }

    #[test]
    fn one_byte_at_a_time() {
        let stream = b"data: a\n\ndata: b\r\n\r\n";
        let chunks: Vec<&[u8]> = stream.chunks(1).collect();
        let (events, rest) = split_all(&chunks);
        assert_eq!(events, vec![b"data: a\n\n".to_vec(), b"data: b\r\n\r\n".to_vec()]);
        assert!(rest.is_empty());
    }

    #[test]
    fn data_fields() {
        assert_eq!(data(b"data: {\"x\":1}\n\n"), Some(b"{\"x\":1}".to_vec()));
        assert_eq!(data(b"data:a\ndata: b\ndata\n\n"), Some(b"a\nb\n".to_vec()));
        assert_eq!(data(b"id: 7\nevent: message\ndata: m\n\n"), Some(b"m".to_vec()));
        assert_eq!(data(b": comment data: no\n\n"), None);
        assert_eq!(data(b"id: 7\nretry: 10\n\n"), None);
        assert_eq!(data(b"data:  two spaces\n\n"), Some(b" two spaces".to_vec()));
    }

    #[test]
    fn rewriting_keeps_other_fields() {
        let event = b"id: 42\r\nevent: message\r\ndata: {\"old\":\r\ndata: 1}\r\n: note\r\nretry: 100\r\n\r\n";
        let out = with_data(event, b"{\"new\":2}");
        assert_eq!(out, b"id: 42\nevent: message\ndata: {\"new\":2}\n: note\nretry: 100\n\n".to_vec());
        assert_eq!(data(&out), Some(b"{\"new\":2}".to_vec()));
        let multi = with_data(b"data: x\n\n", b"a\nb");
        assert_eq!(multi, b"data: a\ndata: b\n\n".to_vec());
    }

    #[test]
    fn bounded_memory() {
        let mut s = EventSplitter::new();
        let big = vec![b'a'; 1024 * 1024];
        let mut err = None;
        for _ in 0..5 {
            if let Err(e) = s.push(&big) {
                err = Some(e);
                break;
            }
        }
        assert_eq!(err, Some(SseError::EventTooLarge));
    }
}
