//! Tracing set-up: JSON lines by default (for log pipelines), text on a terminal; the level
//! comes from `RUST_LOG` (default `info`).
//!
//! Lines are formatted on the request path into a shared buffer that a background thread
//! writes to stdout every [`FLUSH_INTERVAL`] (sooner when [`FLUSH_BYTES`] are waiting). Measured
//! on one pinned core: a `write` per request line cost ~40% of the gateway's throughput, and a
//! channel-per-line writer still woke a thread (and yielded) for every line. A slow stdout never
//! stalls a request: past [`MAX_BUFFERED`] bytes, lines are dropped and counted instead.

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use std::fmt::Write as _;

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::{self, Format, FormatEvent, FormatFields, Json, Writer};
use tracing_subscriber::fmt::time::SystemTime;
use tracing_subscriber::fmt::{FmtContext, MakeWriter};
use tracing_subscriber::registry::LookupSpan;

use crate::cli::LogFormat;
use crate::clock::{Utc, put_digits};

pub const FLUSH_INTERVAL: Duration = Duration::from_millis(50);
pub const FLUSH_BYTES: usize = 64 * 1024;
pub const MAX_BUFFERED: usize = 16 * 1024 * 1024;

/// The most capacity a written-out buffer keeps for reuse; one grown larger by a burst is
/// freed instead.
const KEEP_CAPACITY: usize = 4 * FLUSH_BYTES;

#[derive(Default)]
struct Pending {
    bytes: Vec<u8>,
    /// The buffer last written out, emptied, kept for the next swap: lines are appended into
    /// memory already grown and recently used, rather than into a fresh buffer regrown (and
    /// copied at every doubling) after each flush.
    spare: Vec<u8>,
    dropped: u64,
    closing: bool,
}

/// The buffer between the request path and stdout.
#[derive(Default)]
pub struct LogSink {
    pending: Mutex<Pending>,
    wake: Condvar,
}

impl LogSink {
    fn append(&self, line: &[u8]) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if pending.bytes.len() + line.len() > MAX_BUFFERED {
            pending.dropped += 1;
            return;
        }
        pending.bytes.extend_from_slice(line);
        if pending.bytes.len() >= FLUSH_BYTES {
            self.wake.notify_one();
        }
    }

    /// Writes what is pending; returns false once the sink is closed and drained.
    fn flush_to(&self, out: &mut impl Write) -> bool {
        let (mut bytes, dropped, closing) = {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            if pending.bytes.len() < FLUSH_BYTES && !pending.closing {
                pending = self
                    .wake
                    .wait_timeout(pending, FLUSH_INTERVAL)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            let spare = std::mem::take(&mut pending.spare);
            let bytes = std::mem::replace(&mut pending.bytes, spare);
            (bytes, std::mem::take(&mut pending.dropped), pending.closing)
        };
        if dropped > 0 {
            let _ = writeln!(
                out,
                "{{\"level\":\"WARN\",\"message\":\"{dropped} log lines dropped: stdout too slow\"}}"
            );
        }
        if !bytes.is_empty() {
            let _ = out.write_all(&bytes);
            let _ = out.flush();
        }
        if bytes.capacity() <= KEEP_CAPACITY {
            bytes.clear();
            self.pending.lock().unwrap_or_else(|e| e.into_inner()).spare = bytes;
        }
        !closing
    }
}

/// One event's writer: tracing formats a whole line, then writes it in one call.
pub struct SinkWriter(Arc<LogSink>);

impl Write for SinkWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.append(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[derive(Clone)]
struct Sink(Arc<LogSink>);

impl<'a> MakeWriter<'a> for Sink {
    type Writer = SinkWriter;

    fn make_writer(&'a self) -> Self::Writer {
        SinkWriter(self.0.clone())
    }
}

/// Keeps the flusher running; dropping it writes out everything still buffered.
pub struct LogGuard {
    sink: Arc<LogSink>,
    flusher: Option<std::thread::JoinHandle<()>>,
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        self.sink
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .closing = true;
        self.sink.wake.notify_one();
        if let Some(flusher) = self.flusher.take() {
            let _ = flusher.join();
        }
    }
}

/// Installs the subscriber. Keep the guard until exit.
pub fn init(format: LogFormat) -> LogGuard {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let terminal = std::io::stdout().is_terminal();
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !terminal,
    };
    let sink = Arc::new(LogSink::default());
    let flusher = {
        let sink = sink.clone();
        std::thread::Builder::new()
            .name("log-flusher".into())
            .spawn(move || {
                let mut stdout = std::io::stdout().lock();
                while sink.flush_to(&mut stdout) {}
            })
            .expect("spawning the log flusher")
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(Sink(sink.clone()))
        .with_ansi(terminal && !json);
    if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .event_format(JsonLines::default())
            .init();
    } else {
        builder.init();
    }
    LogGuard {
        sink,
        flusher: Some(flusher),
    }
}

/// tracing-subscriber's JSON lines (flattened fields, no current span), written straight into
/// the line instead of through serde's map serialiser, which re-checked every fragment as
/// UTF-8: measured, that formatter was the largest single cost of a request (~16 % of its
/// instructions). Events inside spans or forwarded from the `log` crate, both rare, go to
/// tracing-subscriber's own formatter; the test below holds the two to the same output.
pub struct JsonLines {
    fallback: Format<Json, SystemTime>,
}

impl Default for JsonLines {
    fn default() -> Self {
        Self {
            fallback: format::format()
                .json()
                .flatten_event(true)
                .with_current_span(false),
        }
    }
}

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let meta = event.metadata();
        let in_span =
            event.parent().is_some() || (event.is_contextual() && ctx.lookup_current().is_some());
        if in_span || meta.fields().field("log.target").is_some() {
            return self.fallback.format_event(ctx, writer, event);
        }
        writer.write_str("{\"timestamp\":\"")?;
        write_timestamp(&mut writer, std::time::SystemTime::now())?;
        writer.write_str("\",\"level\":\"")?;
        writer.write_str(meta.level().as_str())?;
        writer.write_char('"')?;
        let mut fields = JsonFieldWriter {
            out: &mut writer,
            result: Ok(()),
        };
        event.record(&mut fields);
        fields.result?;
        writer.write_str(",\"target\":")?;
        crate::json::write_string(&mut writer, meta.target())?;
        writer.write_str("}\n")
    }
}

/// `2026-11-21T06:30:00.123456Z`, as tracing-subscriber's `SystemTime` timer writes it.
fn write_timestamp(
    out: &mut impl std::fmt::Write,
    time: std::time::SystemTime,
) -> std::fmt::Result {
    let utc = Utc::from(time);
    let mut text = *b"0000-00-00T00:00:00.000000Z";
    utc.put_fields(&mut text, [0, 5, 8, 11, 14, 17]);
    put_digits(&mut text[20..26], utc.micros);
    out.write_str(std::str::from_utf8(&text).expect("ASCII"))
}

/// Appends each field as `,"name":value`.
struct JsonFieldWriter<'a, W: std::fmt::Write> {
    out: &'a mut W,
    result: std::fmt::Result,
}

impl<W: std::fmt::Write> JsonFieldWriter<'_, W> {
    fn field(&mut self, field: &Field, value: impl FnOnce(&mut W) -> std::fmt::Result) {
        if self.result.is_ok() {
            self.result = (|| {
                let name = field.name();
                // Field names are identifiers, which need no escape; any other name gets one.
                if name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
                {
                    self.out.write_str(",\"")?;
                    self.out.write_str(name)?;
                    self.out.write_str("\":")?;
                } else {
                    self.out.write_char(',')?;
                    crate::json::write_string(self.out, name)?;
                    self.out.write_char(':')?;
                }
                value(self.out)
            })();
        }
    }
}

impl<W: std::fmt::Write> Visit for JsonFieldWriter<'_, W> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.field(field, |out| crate::json::write_string(out, value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.field(field, |out| {
            out.write_char('"')?;
            write!(crate::json::Escaper(out), "{value:?}")?;
            out.write_char('"')
        });
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.field(field, |out| write!(out, "{value}"));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.field(field, |out| write!(out, "{value}"));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.field(field, |out| {
            out.write_str(if value { "true" } else { "false" })
        });
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        // serde_json's number format (and `null` for NaN and infinities).
        self.field(field, |out| {
            out.write_str(&serde_json::to_string(&value).map_err(|_| std::fmt::Error)?)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_batched_and_flushed_in_order() {
        let sink = LogSink::default();
        for i in 0..1000 {
            sink.append(format!("line {i}\n").as_bytes());
        }
        let mut out = Vec::new();
        assert!(sink.flush_to(&mut out));
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.lines().count(), 1000);
        assert!(text.starts_with("line 0\n") && text.ends_with("line 999\n"));
    }

    #[test]
    fn written_buffers_are_reused_unless_a_burst_grew_them() {
        let sink = LogSink::default();
        let line = [b'x'; 99];
        let mut out = Vec::new();
        let mut buffers = Vec::new();
        for round in 0..4 {
            for _ in 0..FLUSH_BYTES / 100 {
                sink.append(&line);
                sink.append(b"\n");
            }
            buffers.push(sink.pending.lock().unwrap().bytes.as_ptr());
            assert!(sink.flush_to(&mut out));
            assert_eq!(out.len(), (round + 1) * (FLUSH_BYTES / 100) * 100);
            let pending = sink.pending.lock().unwrap();
            assert!(pending.bytes.is_empty() && pending.spare.is_empty());
            assert_eq!(pending.spare.as_ptr(), buffers[round]);
            assert!(pending.spare.capacity() >= FLUSH_BYTES);
        }
        // Two buffers take turns: each round appends into the one written out two rounds ago.
        assert_eq!(buffers[2], buffers[0]);
        assert_eq!(buffers[3], buffers[1]);
        assert!(out.iter().all(|&b| b == b'x' || b == b'\n'));

        sink.append(&vec![b'y'; KEEP_CAPACITY + 1]);
        assert!(sink.flush_to(&mut out));
        assert_eq!(sink.pending.lock().unwrap().spare.capacity(), 0);
    }

    #[test]
    fn a_backlog_beyond_the_cap_is_dropped_and_reported() {
        let sink = LogSink::default();
        let big = vec![b'x'; MAX_BUFFERED / 2 + 1];
        sink.append(&big);
        sink.append(&big);
        let mut out = Vec::new();
        sink.flush_to(&mut out);
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains("1 log lines dropped"));
        assert_eq!(
            out.len() - text.lines().next().unwrap().len() - 1,
            big.len()
        );
    }

    #[test]
    fn closing_drains_and_stops() {
        let sink = LogSink::default();
        sink.append(b"last words\n");
        sink.pending.lock().unwrap().closing = true;
        let mut out = Vec::new();
        assert!(!sink.flush_to(&mut out));
        assert_eq!(out, b"last words\n");
    }

    /// The same events through [`JsonLines`] and through tracing-subscriber's JSON formatter
    /// give the same lines (but for the timestamps' values).
    #[test]
    fn json_lines_match_tracing_subscribers_json_format() {
        use std::sync::Mutex;

        #[derive(Clone, Default)]
        struct Capture(Arc<Mutex<Vec<u8>>>);
        impl Write for Capture {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        impl<'a> MakeWriter<'a> for Capture {
            type Writer = Capture;
            fn make_writer(&'a self) -> Capture {
                self.clone()
            }
        }

        fn emit() {
            let weird =
                "quote \" backslash \\ newline \n tab \t bell \u{7} del \u{7f} é 漢 🦀 </script>";
            tracing::info!(
                org = "91cf9239",
                function = weird,
                status = 200u16,
                negative = -5i64,
                big = u64::MAX,
                yes = true,
                ratio = 0.25f64,
                whole = 3.0f64,
                nan = f64::NAN,
                shown = %weird,
                debugged = ?("tuple", 1, weird),
                "request"
            );
            tracing::warn!(error = %std::io::Error::other("disk \"full\""), "request failed");
            tracing::error!("a message only, with {} formatting: {:?}", "args", weird);
            tracing::debug!(empty = "", "debug line");
        }

        let ours = Capture::default();
        let theirs = Capture::default();
        let subscriber = |writer: Capture, ours: bool| {
            let builder = tracing_subscriber::fmt()
                .with_max_level(tracing::Level::DEBUG)
                .with_writer(writer)
                .json()
                .flatten_event(true)
                .with_current_span(false);
            if ours {
                tracing::subscriber::with_default(
                    builder.event_format(JsonLines::default()).finish(),
                    emit,
                );
            } else {
                tracing::subscriber::with_default(builder.finish(), emit);
            }
        };
        subscriber(ours.clone(), true);
        subscriber(theirs.clone(), false);
        let without_time = |capture: &Capture| -> Vec<String> {
            let text = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
            text.lines()
                .map(|line| {
                    let value: serde_json::Value = serde_json::from_str(line).unwrap();
                    let stamp = value["timestamp"].as_str().unwrap();
                    assert_eq!(stamp.len(), 27, "{stamp}");
                    line.replace(stamp, "T")
                })
                .collect()
        };
        let (ours, theirs) = (without_time(&ours), without_time(&theirs));
        assert_eq!(ours.len(), 4);
        assert_eq!(ours, theirs);
    }

    #[test]
    fn timestamps_as_tracing_subscriber_writes_them() {
        let time = std::time::UNIX_EPOCH + Duration::from_micros(1_795_000_000_012_345);
        let mut out = String::new();
        write_timestamp(&mut out, time).unwrap();
        assert_eq!(out, "2026-11-18T11:06:40.012345Z");
    }
}
