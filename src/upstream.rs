//! The Invoke path's HTTP/1 client: a keep-alive pool per Lambda endpoint whose connections are
//! driven by the request using them.
//!
//! A general pooled client (hyper-util's) runs each connection in a task of its own and hands
//! every request and response across tasks. Here the request's own task polls the connection
//! while it sends and reads, and puts it back idle afterwards; an idle connection is polled
//! once when taken out, so one the server has closed is noticed and dropped. A request that a
//! reused connection gave back unwritten (it closed as the request was queued) is sent again on
//! another; one that may have reached Lambda never is.

use std::collections::HashMap;
use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Waker};
use std::time::Duration;

use bytes::Bytes;
use http::response::Parts;
use http::{Request, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::TrySendError;
use hyper::client::conn::http1::{self, Connection, SendRequest};
use hyper_rustls::{HttpsConnector, MaybeHttpsStream};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tower::ServiceExt;

type Io = MaybeHttpsStream<TokioIo<TcpStream>>;
type Connector = HttpsConnector<HttpConnector>;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Why an exchange failed. The request may have reached the server unless it is `Connect`.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error("connect to {0}: {1}")]
    Connect(String, #[source] Box<dyn std::error::Error + Send + Sync>),
    #[error(transparent)]
    Http(#[from] hyper::Error),
    #[error("the response could not be read: {0}")]
    Body(#[source] hyper::Error),
    /// The response body went past the caller's limit.
    #[error("the response is larger than {0} bytes")]
    TooLarge(usize),
}

/// Connections to every endpoint, one [`Host`] per `scheme://authority`.
pub struct Pool {
    connector: Connector,
    idle_timeout: Duration,
    max_idle: usize,
    hosts: Mutex<HashMap<String, Arc<Host>>>,
}

impl Pool {
    /// Connections over plain TCP or TLS (trusting the system's roots), at most `max_idle`
    /// idle per origin, each closed after `idle_timeout` unused. Fails if the system's root
    /// certificates cannot be loaded.
    pub fn new(idle_timeout: Duration, max_idle: usize) -> std::io::Result<Self> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(CONNECT_TIMEOUT));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(rustls::crypto::aws_lc_rs::default_provider())?
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Ok(Self {
            connector,
            idle_timeout,
            max_idle,
            hosts: Default::default(),
        })
    }

    /// The connections to `origin` (`scheme://authority`), shared by everything sent there.
    pub fn host(&self, origin: &str) -> Result<Arc<Host>, http::uri::InvalidUri> {
        let mut hosts = self.hosts.lock().expect("hosts lock");
        if let Some(host) = hosts.get(origin) {
            return Ok(host.clone());
        }
        let host = Arc::new(Host {
            origin: origin.parse()?,
            connector: self.connector.clone(),
            idle_timeout: self.idle_timeout,
            max_idle: self.max_idle,
            idle: Mutex::new(Vec::new()),
        });
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(reap(Arc::downgrade(&host)));
        }
        hosts.insert(origin.to_owned(), host.clone());
        Ok(host)
    }
}

/// Keep-alive connections to one origin.
pub struct Host {
    origin: Uri,
    connector: Connector,
    idle_timeout: Duration,
    max_idle: usize,
    /// Oldest first; taken from the end.
    idle: Mutex<Vec<Idle>>,
}

struct Conn {
    sender: SendRequest<Full<Bytes>>,
    connection: Connection<Io, Full<Bytes>>,
}

struct Idle {
    conn: Box<Conn>,
    since: Instant,
}

impl Conn {
    /// Polls the connection without waiting: `false` once it has ended (the server closed it,
    /// or it failed).
    fn alive(&mut self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        Pin::new(&mut self.connection).poll(&mut cx).is_pending() && !self.sender.is_closed()
    }
}

impl Host {
    /// Sends `request` (origin-form URI, `Host` header set) and reads the whole response body,
    /// at most `limit` bytes.
    pub async fn send(
        &self,
        mut request: Request<Full<Bytes>>,
        limit: usize,
    ) -> Result<(Parts, Bytes), Failure> {
        loop {
            // Boxed, as is the rare connect's future: a connection is ~1.8 KB, and every
            // future that holds one (up to the request's own) would be that much larger, and
            // copied whole each time it is moved.
            let (mut conn, reused) = match self.checkout() {
                Some(conn) => (conn, true),
                None => (Box::pin(self.connect()).await?, false),
            };
            let mut open = true;
            let Conn { sender, connection } = &mut *conn;
            // Err: the request failed, maybe given back unwritten. Ok(Err): the response failed.
            type Outcome =
                Result<Result<(Parts, Bytes), Failure>, TrySendError<Request<Full<Bytes>>>>;
            let exchange = async {
                let response = sender.try_send_request(request).await?;
                let (parts, body) = response.into_parts();
                match Limited::new(body, limit).collect().await {
                    Ok(body) => Outcome::Ok(Ok((parts, body.to_bytes()))),
                    Err(e) => match e.downcast::<hyper::Error>() {
                        Ok(e) => Ok(Err(Failure::Body(*e))),
                        Err(_) => Ok(Err(Failure::TooLarge(limit))),
                    },
                }
            };
            match drive(connection, &mut open, exchange).await {
                Ok(Ok(answer)) => {
                    if open && !sender.is_closed() {
                        self.checkin(conn);
                    }
                    return Ok(answer);
                }
                Ok(Err(failure)) => return Err(failure),
                Err(mut e) => match e.take_message() {
                    // Never written: a reused connection closed under it; try another.
                    Some(unsent) if reused => request = unsent,
                    _ => return Err(Failure::Http(e.into_error())),
                },
            }
        }
    }

    /// The most recently used idle connection that is still open.
    fn checkout(&self) -> Option<Box<Conn>> {
        loop {
            let Idle { mut conn, since } = self.idle.lock().expect("idle lock").pop()?;
            if since.elapsed() >= self.idle_timeout {
                // Everything older went stale too.
                self.idle.lock().expect("idle lock").clear();
                return None;
            }
            if conn.alive() {
                return Some(conn);
            }
        }
    }

    fn checkin(&self, conn: Box<Conn>) {
        let mut idle = self.idle.lock().expect("idle lock");
        if idle.len() < self.max_idle {
            idle.push(Idle {
                conn,
                since: Instant::now(),
            });
        }
    }

    async fn connect(&self) -> Result<Box<Conn>, Failure> {
        let connect_failure = |e| Failure::Connect(self.origin.to_string(), e);
        let io = self
            .connector
            .clone()
            .oneshot(self.origin.clone())
            .await
            .map_err(connect_failure)?;
        let (sender, connection) = http1::Builder::new().handshake(io).await?;
        Ok(Box::new(Conn { sender, connection }))
    }

    /// Drops idle connections past the idle timeout or closed by the server.
    fn sweep(&self) {
        let mut idle = self.idle.lock().expect("idle lock");
        idle.retain_mut(|entry| entry.since.elapsed() < self.idle_timeout && entry.conn.alive());
    }
}

/// Runs `exchange` while polling `connection`, which does the exchange's reading and writing.
async fn drive<F: Future>(
    connection: &mut Connection<Io, Full<Bytes>>,
    open: &mut bool,
    exchange: F,
) -> F::Output {
    let mut exchange = pin!(exchange);
    poll_fn(|cx| {
        // An ended connection has handed its outcome (or the unsent request) to the exchange.
        if *open && Pin::new(&mut *connection).poll(cx).is_ready() {
            *open = false;
        }
        exchange.as_mut().poll(cx)
    })
    .await
}

/// Sweeps `host`'s idle connections every few seconds while the host exists.
async fn reap(host: Weak<Host>) {
    let period = match host.upgrade() {
        Some(host) => (host.idle_timeout / 4).max(Duration::from_millis(100)),
        None => return,
    };
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        match host.upgrade() {
            Some(host) => host.sweep(),
            None => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// A loopback HTTP/1 server answering every request with `body`, closing each connection
    /// after `per_connection` answers (its last one says `connection: close` if `announce`).
    struct Server {
        origin: String,
        accepted: Arc<AtomicUsize>,
    }

    async fn server(body: &'static str, per_connection: usize, announce: bool) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let origin = format!("http://{}", listener.local_addr().unwrap());
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    for answered in 1..=per_connection {
                        if !read_request(&mut stream, &mut buf).await {
                            return;
                        }
                        let close = if announce && answered == per_connection {
                            "connection: close\r\n"
                        } else {
                            ""
                        };
                        let response = format!(
                            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n{close}\r\n{body}",
                            body.len()
                        );
                        if stream.write_all(response.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Server { origin, accepted }
    }

    /// Reads one request with a content-length body; `false` at end of stream.
    async fn read_request(stream: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map_or(0, |v| v.trim().parse().unwrap());
                if buf.len() >= end + 4 + length {
                    buf.drain(..end + 4 + length);
                    return true;
                }
            }
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    fn pool() -> Pool {
        Pool::new(Duration::from_secs(50), 8).unwrap()
    }

    fn request(origin: &str, payload: &'static str) -> Request<Full<Bytes>> {
        Request::post("/2015-03-31/functions/f/invocations")
            .header(http::header::HOST, origin.trim_start_matches("http://"))
            .body(Full::new(Bytes::from_static(payload.as_bytes())))
            .unwrap()
    }

    #[tokio::test]
    async fn sequential_requests_share_one_connection() {
        let server = server("{\"ok\":true}", usize::MAX, false).await;
        let host = pool().host(&server.origin).unwrap();
        for _ in 0..5 {
            let (parts, body) = host
                .send(request(&server.origin, "{}"), 1024)
                .await
                .unwrap();
            assert_eq!(parts.status, 200);
            assert_eq!(body, "{\"ok\":true}");
        }
        assert_eq!(server.accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_connection_the_server_closed_is_not_reused() {
        // The server answers once per connection and closes without saying so beforehand.
        let server = server("{}", 1, false).await;
        let host = pool().host(&server.origin).unwrap();
        for round in 1..=3 {
            host.send(request(&server.origin, "{}"), 1024)
                .await
                .unwrap();
            // Let the FIN arrive before the next checkout.
            tokio::time::sleep(Duration::from_millis(50)).await;
            assert_eq!(server.accepted.load(Ordering::SeqCst), round);
        }
    }

    #[tokio::test]
    async fn connection_close_is_honoured() {
        let server = server("{}", 1, true).await;
        let host = pool().host(&server.origin).unwrap();
        host.send(request(&server.origin, "{}"), 1024)
            .await
            .unwrap();
        host.send(request(&server.origin, "{}"), 1024)
            .await
            .unwrap();
        assert_eq!(server.accepted.load(Ordering::SeqCst), 2);
        assert!(host.idle.lock().unwrap().len() <= 1);
    }

    #[tokio::test]
    async fn an_oversized_body_fails_and_its_connection_is_dropped() {
        let server = server("0123456789", usize::MAX, false).await;
        let host = pool().host(&server.origin).unwrap();
        let err = host
            .send(request(&server.origin, "{}"), 4)
            .await
            .unwrap_err();
        assert!(matches!(err, Failure::TooLarge(4)), "{err}");
        assert!(host.idle.lock().unwrap().is_empty());
        let (_, body) = host
            .send(request(&server.origin, "{}"), 1024)
            .await
            .unwrap();
        assert_eq!(body, "0123456789");
        assert_eq!(server.accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_connect_failure() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let origin = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        let host = pool().host(&origin).unwrap();
        let err = host.send(request(&origin, "{}"), 1024).await.unwrap_err();
        assert!(matches!(err, Failure::Connect(..)), "{err}");
    }

    #[tokio::test(start_paused = true)]
    async fn idle_connections_expire() {
        let server = server("{}", usize::MAX, false).await;
        let pool = pool();
        let host = pool.host(&server.origin).unwrap();
        host.send(request(&server.origin, "{}"), 1024)
            .await
            .unwrap();
        assert_eq!(host.idle.lock().unwrap().len(), 1);
        tokio::time::sleep(Duration::from_secs(51)).await;
        // Swept by the reaper, or at the latest refused at checkout.
        assert!(host.checkout().is_none());
        host.send(request(&server.origin, "{}"), 1024)
            .await
            .unwrap();
        assert_eq!(server.accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn concurrent_requests_get_connections_of_their_own() {
        let server = server("{}", usize::MAX, false).await;
        let host = pool().host(&server.origin).unwrap();
        let mut sends = tokio::task::JoinSet::new();
        for _ in 0..4 {
            let (host, origin) = (host.clone(), server.origin.clone());
            sends.spawn(async move { host.send(request(&origin, "{}"), 1024).await.map(|_| ()) });
        }
        while let Some(sent) = sends.join_next().await {
            sent.unwrap().unwrap();
        }
        let opened = server.accepted.load(Ordering::SeqCst);
        assert!((1..=4).contains(&opened), "{opened}");
        assert_eq!(host.idle.lock().unwrap().len(), opened);
    }
}
