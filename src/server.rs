//! Assembly and lifetime: load the AWS base config, build the gateway from a validated config,
//! serve the public and admin listeners, reload on SIGHUP, drain on shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use aws_config::BehaviorVersion;
use aws_config::timeout::TimeoutConfig;
use axum::response::Response;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::ServiceExt;

use crate::auth::{self, Authenticator};
use crate::config::{Config, ConfigErrors};
use crate::credentials::{AssumeRole, CredentialCache, Sts};
use crate::guard::AuthGuard;
use crate::invoke::{Invoker, InvokerError};
use crate::metrics::Metrics;
use crate::tenants::{self, Org};
use crate::tls::Tls;
use crate::{admin, ingress};

/// The part of the gateway a reload replaces: the config and the orgs built from it.
/// A request holds the `Arc` it started with, so in-flight requests finish on the old one.
pub struct Tenancy {
    pub config: Config,
    pub orgs: Vec<Org>,
    pub auth: Authenticator,
}

/// Everything the request path reads. The credential cache, Lambda clients and metrics outlive
/// reloads, so orgs whose role and ExternalId are unchanged keep their credentials.
pub struct Gateway {
    tenancy: ArcSwap<Tenancy>,
    pub guard: AuthGuard,
    pub cache: Arc<CredentialCache>,
    pub invoker: Invoker,
    pub metrics: Arc<Metrics>,
    /// TLS for the public listener when `server.tls` was set at start.
    pub tls: Option<Arc<Tls>>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(
        "no AWS region for the gateway's STS calls: set aws.region in the config or AWS_REGION"
    )]
    NoRegion,
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("metrics registration failed: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("serving failed: {0}")]
    Serve(#[from] std::io::Error),
    #[error(transparent)]
    Invoker(#[from] InvokerError),
    #[error("server.tls: {0}")]
    Tls(String),
}

impl StartError {
    /// 64 (EX_USAGE) when the configuration is what must change, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            StartError::NoRegion | StartError::Bind { .. } | StartError::Tls(_) => {
                crate::cli::EXIT_CONFIG
            }
            StartError::Metrics(_) | StartError::Serve(_) | StartError::Invoker(_) => 1,
        }
    }
}

/// Builds the gateway from `config` with the AWS default chain, binds both listeners and serves
/// until `shutdown` resolves. `config_path` is re-read on SIGHUP.
pub async fn start(
    config: Config,
    config_path: Option<PathBuf>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    let sdk = aws_base_config(&config).await?;
    let bind = |addr| async move {
        TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind { addr, source })
    };
    let public = bind(config.server.listen).await?;
    let admin = bind(config.server.admin_listen).await?;
    let metrics = Arc::new(Metrics::new(
        &prometheus::Registry::new(),
        config.metrics.org_label,
    )?);
    let gateway = Gateway::new(config, sdk.clone(), sts(&sdk), metrics)?;
    tracing::info!(
        listen = %public.local_addr()?,
        admin = %admin.local_addr()?,
        orgs = gateway.tenancy().orgs.len(),
        tls = gateway.tls.is_some(),
        workers = tokio::runtime::Handle::current().metrics().num_workers(),
        "genesys-lambda-gateway serving"
    );
    if let Some(path) = config_path {
        tokio::spawn(reload_on_hangup(gateway.clone(), path));
    }
    run(gateway, public, admin, shutdown).await?;
    Ok(())
}

/// The gateway's own AWS configuration from the default chain (env, profile, web identity,
/// ECS, IMDS), with `aws.region` from the config taking precedence.
pub async fn aws_base_config(config: &Config) -> Result<aws_config::SdkConfig, StartError> {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(region) = &config.aws.region {
        loader = loader.region(aws_config::Region::new(region.clone()));
    }
    let sdk = loader.load().await;
    if sdk.region().is_none() {
        return Err(StartError::NoRegion);
    }
    Ok(sdk)
}

/// STS through the SDK with the base credentials. Its own timeouts bound a hanging STS even
/// when no request is waiting (background refreshes).
pub fn sts(sdk: &aws_config::SdkConfig) -> Arc<dyn AssumeRole> {
    let config = aws_sdk_sts::config::Builder::from(sdk)
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(3))
                .operation_attempt_timeout(Duration::from_secs(5))
                .operation_timeout(Duration::from_secs(15))
                .build(),
        )
        .build();
    Arc::new(Sts::new(aws_sdk_sts::Client::from_conf(config)))
}

impl Gateway {
    pub fn new(
        config: Config,
        sdk: aws_config::SdkConfig,
        assumer: Arc<dyn AssumeRole>,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<Self>, StartError> {
        let tls = config
            .server
            .tls
            .as_ref()
            .map(|files| Tls::new(files).map(Arc::new))
            .transpose()
            .map_err(StartError::Tls)?;
        let cache = CredentialCache::new(assumer, (&config.credentials).into(), metrics.clone());
        let invoker = Invoker::new(sdk, metrics.clone())?;
        let tenancy = Tenancy::build(config, &cache, &invoker);
        if tenancy.config.credentials.prefetch {
            let slots = tenancy.orgs.iter().map(|o| o.credentials.clone()).collect();
            cache.prefetch(slots, tenancy.config.credentials.prefetch_concurrency);
        }
        Ok(Arc::new(Gateway {
            tenancy: ArcSwap::from_pointee(tenancy),
            guard: AuthGuard::default(),
            cache,
            invoker,
            metrics,
            tls,
        }))
    }

    /// The configuration in force now.
    pub fn tenancy(&self) -> Arc<Tenancy> {
        self.tenancy.load_full()
    }

    /// Swaps in a new (validated) configuration. Settings that only take effect at start are
    /// kept as they are; the returned list names each one that changed.
    pub fn reload(&self, config: Config) -> Vec<&'static str> {
        let old = self.tenancy();
        let (o, n) = (&old.config, &config);
        let restart_only = [
            ("server.listen", o.server.listen != n.server.listen),
            (
                "server.admin_listen",
                o.server.admin_listen != n.server.admin_listen,
            ),
            (
                "server.max_inflight",
                o.server.max_inflight != n.server.max_inflight,
            ),
            (
                "server.max_connections",
                o.server.max_connections != n.server.max_connections,
            ),
            (
                "server.header_read_timeout",
                o.server.header_read_timeout != n.server.header_read_timeout,
            ),
            (
                "server.shutdown_grace",
                o.server.shutdown_grace != n.server.shutdown_grace,
            ),
            (
                "server.keepalive_timeout",
                o.server.keepalive_timeout != n.server.keepalive_timeout,
            ),
            // TLS on or off needs a restart; new files for TLS in force are re-read below.
            (
                "server.tls",
                o.server.tls.is_some() != n.server.tls.is_some(),
            ),
            ("aws", o.aws != n.aws),
            ("credentials", o.credentials != n.credentials),
            ("metrics", o.metrics != n.metrics),
        ]
        .into_iter()
        .filter_map(|(key, changed)| changed.then_some(key))
        .collect();
        if let (Some(tls), Some(files)) = (&self.tls, &n.server.tls) {
            match tls.reload(files) {
                Ok(()) => tracing::info!("TLS certificate and key re-read"),
                // Validation read the same files a moment ago; they changed since.
                Err(e) => {
                    tracing::error!(error = %e, "TLS files refused; the certificate in force stays")
                }
            }
        }
        let tenancy = Tenancy::build(config, &self.cache, &self.invoker);
        self.tenancy.store(Arc::new(tenancy));
        // The old tenancy (and the credential slots only it held) goes when its last request ends.
        restart_only
    }
}

impl Tenancy {
    fn build(config: Config, cache: &CredentialCache, invoker: &Invoker) -> Tenancy {
        let orgs = tenants::build(&config, cache);
        let auth = Authenticator::new(config.orgs.iter().map(|org| {
            let hashes = org
                .token_sha256
                .as_slice()
                .iter()
                .map(|h| auth::parse_hash(h).expect("validated config"))
                .collect();
            (org.id.as_str(), hashes)
        }));
        // Endpoints for every configured region up front, so no request resolves one.
        for org in &orgs {
            for function in &org.functions {
                invoker.prepare(&function.arn.region);
            }
        }
        Tenancy { config, orgs, auth }
    }
}

/// Re-reads `path` on every SIGHUP. A config that fails validation is refused as a whole:
/// the one in force stays, every problem is logged, and the failure is counted.
///
/// Reading, validating and building run on the blocking pool: for 10,000 orgs they take a few
/// tenths of a second, which would stall every request on the worker (or, on one CPU, the
/// only thread) that ran them.
async fn reload_on_hangup(gateway: Arc<Gateway>, path: PathBuf) {
    let mut hangups = crate::shutdown::hangups();
    while hangups.recv().await.is_some() {
        let (gw, file) = (gateway.clone(), path.clone());
        let reload = tokio::task::spawn_blocking(move || {
            let config = Config::load(&file)?;
            let orgs = config.orgs.len();
            Ok::<_, ConfigErrors>((orgs, gw.reload(config)))
        });
        let reloaded = match reload.await {
            Ok(reloaded) => reloaded,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => return, // the runtime is shutting down
        };
        match reloaded {
            Ok((orgs, restart_only)) => {
                gateway
                    .metrics
                    .config_reload
                    .with_label_values(&["ok"])
                    .inc();
                tracing::info!(path = %path.display(), orgs, "configuration reloaded");
                if !restart_only.is_empty() {
                    tracing::warn!(
                        changed = ?restart_only,
                        "these settings changed but take effect only at the next start"
                    );
                }
            }
            Err(errors) => {
                gateway
                    .metrics
                    .config_reload
                    .with_label_values(&["error"])
                    .inc();
                for problem in &errors.0 {
                    tracing::error!(path = %path.display(), problem = %problem, "configuration refused");
                }
                tracing::error!(
                    problems = errors.0.len(),
                    "reload refused; the previous configuration stays in force"
                );
            }
        }
    }
}

/// The public service: the invoke endpoint behind the global in-flight cap.
pub fn public_service(gateway: Arc<Gateway>) -> ingress::PublicService {
    ingress::PublicService::new(gateway)
}

/// Serves until `shutdown` resolves, then drains: readiness turns 503, the listeners stop
/// accepting, in-flight requests get up to `server.shutdown_grace` to finish.
pub async fn run(
    gateway: Arc<Gateway>,
    public: TcpListener,
    admin_listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let server = gateway.tenancy().config.server.clone();
    let ready = Arc::new(AtomicBool::new(true));
    let (stop_tx, stop_rx) = watch::channel(false);
    // The admin listener keeps answering through the drain (`/ready` says 503, `/metrics` shows
    // the drain) and is stopped only once the public side is done.
    let (_admin_stop, admin_stop_rx) = watch::channel(false);
    let limits = Limits {
        header_read_timeout: server.header_read_timeout,
        keepalive_timeout: server.keepalive_timeout,
        max_connections: server.max_connections,
    };
    let admin = admin::router(gateway.clone(), ready.clone());
    let admin = tokio::spawn(serve(
        admin_listener,
        App::Admin(admin),
        Limits {
            max_connections: 64,
            ..limits
        },
        None,
        admin_stop_rx,
    ));
    let tls = gateway.tls.clone();
    let app = App::Public(public_service(gateway));
    let public = serve(public, app, limits, tls, stop_rx);
    let drain = async {
        shutdown.await;
        tracing::info!(
            grace_s = server.shutdown_grace.as_secs(),
            "shutting down; draining in-flight requests"
        );
        ready.store(false, Ordering::SeqCst);
        let _ = stop_tx.send(true);
        tokio::time::sleep(server.shutdown_grace).await;
    };
    tokio::select! {
        () = public => tracing::info!("drained; every in-flight request finished"),
        () = drain => tracing::warn!("shutdown grace expired with requests still in flight"),
    }
    admin.abort();
    Ok(())
}

/// Per-listener connection limits.
#[derive(Debug, Clone, Copy)]
struct Limits {
    /// From a connection's open (or the first byte after an idle spell) to a complete request
    /// head, and for the TLS handshake.
    header_read_timeout: Duration,
    /// With no request in flight and nothing sent, a connection is closed after this long.
    keepalive_timeout: Duration,
    max_connections: usize,
}

/// Accepts connections (HTTP/1.1 and HTTP/2, over TLS when `tls` is set) until `stop`, at most
/// `max_connections` at once (further ones wait in the kernel's backlog), then waits for the
/// open ones to finish their requests. Idle keep-alive connections are closed at once.
async fn serve(
    listener: TcpListener,
    app: App,
    limits: Limits,
    tls: Option<Arc<Tls>>,
    stop: watch::Receiver<bool>,
) {
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let mut stopping = stop.clone();
    loop {
        let accepted = tokio::select! {
            accepted = accept(&listener, &slots) => accepted,
            () = stopped(&mut stopping) => break,
        };
        let (stream, peer, slot) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Usually out of file descriptors: pause rather than spin.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Responses are written whole; waiting to coalesce them only adds latency.
        let _ = stream.set_nodelay(true);
        let connection = Connection {
            peer,
            app: app.clone(),
            builder: builder.clone(),
            limits,
            stop: stop.clone(),
        };
        let tls = tls.as_ref().map(|tls| tls.acceptor());
        tokio::spawn(async move {
            match tls {
                None => connection.serve(stream).await,
                Some(acceptor) => {
                    let handshake =
                        tokio::time::timeout(limits.header_read_timeout, acceptor.accept(stream));
                    match handshake.await {
                        Ok(Ok(stream)) => connection.serve(stream).await,
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
            drop(slot);
        });
    }
    drop(listener);
    // Every open connection holds a slot: having them all back means every one has ended.
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let _ = slots.acquire_many(all).await;
}

/// What a listener serves: the public invoke endpoint, or the admin router.
#[derive(Clone)]
pub enum App {
    Public(ingress::PublicService),
    Admin(axum::Router),
}

/// A connection's requests, each handed to the listener's app and counted in the connection's
/// activity while in flight. Called directly by hyper: no per-request clone of a boxed service,
/// and one boxed future per request.
struct ConnectionService {
    app: App,
    peer: std::net::SocketAddr,
    activity: Arc<Activity>,
}

impl hyper::service::Service<http::Request<Incoming>> for ConnectionService {
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn call(&self, request: http::Request<Incoming>) -> Self::Future {
        let busy = self.activity.begin();
        match &self.app {
            App::Public(public) => {
                let (public, peer) = (public.clone(), self.peer);
                Box::pin(async move {
                    let response = public.serve(peer, request).await;
                    drop(busy);
                    Ok(response)
                })
            }
            App::Admin(router) => {
                let response = router.clone().oneshot(request);
                Box::pin(async move {
                    let response = response.await;
                    drop(busy);
                    response
                })
            }
        }
    }
}

/// One accepted connection and what serving it needs.
struct Connection {
    peer: std::net::SocketAddr,
    app: App,
    builder: hyper_util::server::conn::auto::Builder<TokioExecutor>,
    limits: Limits,
    stop: watch::Receiver<bool>,
}

impl Connection {
    /// Serves requests until the client closes, a timeout closes it, or the drain begins
    /// (then it finishes what is in flight and closes).
    async fn serve<S>(mut self, stream: S)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let activity = Arc::new(Activity::default());
        let peer = self.peer;
        let service = ConnectionService {
            app: self.app,
            peer,
            activity: activity.clone(),
        };
        let io = TokioIo::new(Watched::new(stream, activity.clone()));
        let connection = self.builder.serve_connection_with_upgrades(io, service);
        tokio::pin!(connection);
        let mut closing = false;
        loop {
            tokio::select! {
                ended = connection.as_mut() => {
                    if let Err(e) = ended {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                    return;
                }
                expired = activity.expired(self.limits), if !closing => match expired {
                    Expired::Head => {
                        tracing::debug!(%peer, "connection closed: no complete request head within the header read timeout");
                        return;
                    }
                    Expired::Idle => {
                        connection.as_mut().graceful_shutdown();
                        closing = true;
                    }
                },
                () = stopped(&mut self.stop), if !closing => {
                    connection.as_mut().graceful_shutdown();
                    closing = true;
                }
            }
        }
    }
}

/// What a connection is doing, for its timeouts: requests in flight, or waiting for a request
/// head since some bytes (or the connection itself) arrived, or idle.
///
/// On HTTP/2 only the connection preface is held to the header read timeout: between streams a
/// client sends control frames (SETTINGS acks, WINDOW_UPDATE, PING) that are no request head, so
/// there bytes do not restart any clock and an idle connection ends after `keepalive_timeout`.
///
/// A request changes the state without waking anyone or touching a timer: it stores when the
/// new state began, and [`Activity::expired`] reads that when it wakes (see there).
struct Activity {
    in_flight: AtomicUsize,
    /// [`BUSY`] from a request's start until the connection has none in flight. Then bit 0 is
    /// set while a request head is being read (bytes arrived while idle), and the rest holds when
    /// that state began, in µs since `epoch`. One word, so that a reader never pairs a state with
    /// another state's start.
    waiting: AtomicU64,
    /// The HTTP/2 connection preface has arrived.
    http2: AtomicBool,
    epoch: tokio::time::Instant,
}

const READING_HEAD: u64 = 1;
const BUSY: u64 = u64::MAX;

impl Default for Activity {
    fn default() -> Self {
        Activity {
            in_flight: AtomicUsize::new(0),
            // A new connection owes a request head at once.
            waiting: AtomicU64::new(READING_HEAD),
            http2: AtomicBool::new(false),
            epoch: tokio::time::Instant::now(),
        }
    }
}

enum Expired {
    /// A request head took longer than `header_read_timeout` (slow-loris, or a silent peer).
    Head,
    /// Nothing in flight and nothing sent for `keepalive_timeout`.
    Idle,
}

impl Activity {
    /// `waiting`'s value for a state beginning now.
    fn began_now(&self, reading_head: bool) -> u64 {
        let since = self.epoch.elapsed().as_micros() as u64;
        since << 1 | u64::from(reading_head)
    }

    fn begin(self: &Arc<Self>) -> Busy {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.waiting.store(BUSY, Ordering::SeqCst);
        Busy(self.clone())
    }

    fn on_read(&self) {
        if self.http2.load(Ordering::SeqCst) || self.in_flight.load(Ordering::SeqCst) > 0 {
            return;
        }
        let waiting = self.waiting.load(Ordering::SeqCst);
        // (`BUSY` has the flag set: a request's end is still being recorded.)
        if waiting & READING_HEAD == 0 {
            // Lost only to a request beginning.
            let _ = self.waiting.compare_exchange(
                waiting,
                self.began_now(true),
                Ordering::SeqCst,
                Ordering::SeqCst,
            );
        }
    }

    /// The connection speaks HTTP/2: from now on it is either busy or idle.
    fn on_http2_preface(&self) {
        self.http2.store(true, Ordering::SeqCst);
        if self.in_flight.load(Ordering::SeqCst) == 0 {
            self.waiting.store(self.began_now(false), Ordering::SeqCst);
        }
    }

    #[cfg(test)]
    fn reading_head(&self) -> bool {
        let waiting = self.waiting.load(Ordering::SeqCst);
        waiting != BUSY && waiting & READING_HEAD != 0
    }

    /// Resolves when the connection has waited too long for a request head or sat idle too
    /// long.
    ///
    /// It sleeps until the current state's deadline, but never longer than the shorter limit:
    /// a state that begins after a look ends no sooner than that after it, so no deadline is
    /// missed, and no request has to wake this. It then looks again.
    async fn expired(&self, limits: Limits) -> Expired {
        let check = limits.header_read_timeout.min(limits.keepalive_timeout);
        loop {
            let now = tokio::time::Instant::now();
            let mut wake = now + check;
            // The count first: a request that begins after it is read shows as `BUSY` below.
            let idle = self.in_flight.load(Ordering::SeqCst) == 0;
            let waiting = self.waiting.load(Ordering::SeqCst);
            if idle && waiting != BUSY {
                let head = waiting & READING_HEAD != 0;
                let limit = if head {
                    limits.header_read_timeout
                } else {
                    limits.keepalive_timeout
                };
                let deadline = self.epoch + Duration::from_micros(waiting >> 1) + limit;
                if deadline <= now {
                    return if head { Expired::Head } else { Expired::Idle };
                }
                wake = wake.min(deadline);
            }
            tokio::time::sleep_until(wake).await;
        }
    }
}

/// A request in flight on a connection; dropped when its response is ready (or abandoned).
struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        let activity = &self.0;
        if activity.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            // Idle from now. (Should a request begin meanwhile, it counts as busy anyway.)
            activity
                .waiting
                .store(activity.began_now(false), Ordering::SeqCst);
        }
    }
}

/// The connection's stream, telling its [`Activity`] when bytes arrive and whether they open
/// with the HTTP/2 preface.
struct Watched<S> {
    inner: S,
    activity: Arc<Activity>,
    /// How many of the first bytes matched the HTTP/2 preface; `None` once decided.
    preface: Option<usize>,
}

const HTTP2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

impl<S> Watched<S> {
    fn new(inner: S, activity: Arc<Activity>) -> Self {
        Watched {
            inner,
            activity,
            preface: Some(0),
        }
    }

    fn saw(&mut self, bytes: &[u8]) {
        if let Some(matched) = self.preface {
            let want = &HTTP2_PREFACE[matched..];
            let n = want.len().min(bytes.len());
            self.preface = if bytes[..n] != want[..n] {
                None
            } else if matched + n == HTTP2_PREFACE.len() {
                self.activity.on_http2_preface();
                None
            } else {
                Some(matched + n)
            };
        }
        self.activity.on_read();
    }
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Watched<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.saw(&buf.filled()[before..]);
        }
        polled
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Waits for a free connection slot, then for a connection.
async fn accept(
    listener: &TcpListener,
    slots: &Arc<tokio::sync::Semaphore>,
) -> std::io::Result<(
    tokio::net::TcpStream,
    std::net::SocketAddr,
    tokio::sync::OwnedSemaphorePermit,
)> {
    let slot = slots.clone().acquire_owned().await.expect("never closed");
    let (stream, peer) = listener.accept().await?;
    Ok((stream, peer, slot))
}

async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fed(chunks: &[&[u8]]) -> Arc<Activity> {
        let activity = Arc::new(Activity::default());
        let mut watched = Watched::new((), activity.clone());
        for chunk in chunks {
            watched.saw(chunk);
        }
        activity
    }

    #[test]
    fn the_http2_preface_is_recognised_across_reads() {
        let whole = fed(&[HTTP2_PREFACE]);
        assert!(whole.http2.load(Ordering::SeqCst));
        assert!(!whole.reading_head());

        let (a, b) = HTTP2_PREFACE.split_at(5);
        let (b, c) = b.split_at(10);
        let split = fed(&[a, b, c, b"\0\0\x12\x04"]);
        assert!(split.http2.load(Ordering::SeqCst));
        assert!(!split.reading_head());
    }

    #[test]
    fn http1_bytes_are_a_request_head_being_read() {
        for chunks in [
            &[b"POST /v1/functions/f/invoke HTTP/1.1\r\n".as_slice()][..],
            &[b"PRI * HTTP/1.1\r\n".as_slice()][..],
            &[b"PRI * ".as_slice(), b"HTTP/2.0\r\n\r\nXX".as_slice()][..],
        ] {
            let activity = fed(chunks);
            assert!(!activity.http2.load(Ordering::SeqCst), "{chunks:?}");
            assert!(activity.reading_head(), "{chunks:?}");
        }
    }
}
