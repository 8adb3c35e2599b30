//! Assembly and lifetime: load the AWS base config, build the gateway from a validated config,
//! serve the public and admin listeners, reload on SIGHUP, drain on shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use aws_config::BehaviorVersion;
use aws_config::timeout::TimeoutConfig;
use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::response::Response;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::ServiceBuilder;

use crate::auth::{self, Authenticator};
use crate::config::Config;
use crate::credentials::{AssumeRole, CredentialCache, Sts};
use crate::error::RequestError;
use crate::guard::AuthGuard;
use crate::invoke::{Invoker, InvokerError};
use crate::metrics::Metrics;
use crate::tenants::{self, Org};
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
}

impl StartError {
    /// 64 (EX_USAGE) when the configuration is what must change, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            StartError::NoRegion | StartError::Bind { .. } => crate::cli::EXIT_CONFIG,
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
    ) -> Result<Arc<Self>, InvokerError> {
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
            ("aws", o.aws != n.aws),
            ("credentials", o.credentials != n.credentials),
            ("metrics", o.metrics != n.metrics),
        ]
        .into_iter()
        .filter_map(|(key, changed)| changed.then_some(key))
        .collect();
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
            for function in org.functions.values() {
                invoker.prepare(&function.arn.region);
            }
        }
        Tenancy { config, orgs, auth }
    }
}

/// Re-reads `path` on every SIGHUP. A config that fails validation is refused as a whole:
/// the one in force stays, every problem is logged, and the failure is counted.
async fn reload_on_hangup(gateway: Arc<Gateway>, path: PathBuf) {
    let mut hangups = crate::shutdown::hangups();
    while hangups.recv().await.is_some() {
        match Config::load(&path) {
            Ok(config) => {
                let orgs = config.orgs.len();
                let restart_only = gateway.reload(config);
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

/// The public service: the ingress router behind the global in-flight cap.
pub fn public_service(gateway: Arc<Gateway>) -> Router {
    let max_inflight = gateway.tenancy().config.server.max_inflight;
    ingress::router(gateway).layer(
        ServiceBuilder::new()
            // Outermost: turn the load-shed refusal below into our JSON 503 `overloaded`.
            .layer(HandleErrorLayer::new(|_: tower::BoxError| async {
                Ok::<Response, Infallible>(RequestError::Overloaded.into_response_with_id(""))
            }))
            // Refuse at once rather than queue: a queued data action only times out later.
            .load_shed()
            // At most `server.max_inflight` requests in the handler at once, over all orgs.
            .concurrency_limit(max_inflight),
    )
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
    let admin = admin::router(gateway.clone(), ready.clone());
    let admin = tokio::spawn(serve(
        admin_listener,
        admin,
        server.header_read_timeout,
        64,
        admin_stop_rx,
    ));
    let public = serve(
        public,
        public_service(gateway),
        server.header_read_timeout,
        server.max_connections,
        stop_rx,
    );
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

/// The peer address of a request's connection, in its extensions.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub std::net::SocketAddr);

/// Accepts connections (HTTP/1.1 and HTTP/2) until `stop`, at most `max_connections` at once
/// (further ones wait in the kernel's backlog), then waits for the open ones to finish their
/// requests. Idle keep-alive connections are closed at once.
async fn serve(
    listener: TcpListener,
    app: Router,
    header_read_timeout: Duration,
    max_connections: usize,
    mut stop: watch::Receiver<bool>,
) {
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(max_connections));
    loop {
        let accepted = tokio::select! {
            accepted = accept(&listener, &slots) => accepted,
            () = stopped(&mut stop) => break,
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
        let app = app.clone();
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let service = TowerToHyperService::new(tower::service_fn(
            move |mut request: http::Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(Peer(peer));
                tower::Service::call(&mut app.clone(), request)
            },
        ));
        tokio::spawn(async move {
            // hyper's header read timeout starts with the first byte: a connection that never
            // sends one would hold its slot (and a file descriptor) for ever.
            // (`readable()` can report a fresh socket ready with nothing to read; `peek` waits
            // for a byte.)
            let mut first = [0u8; 1];
            match tokio::time::timeout(header_read_timeout, stream.peek(&mut first)).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => {
                    tracing::debug!(%peer, "connection closed: nothing sent within the header read timeout");
                    drop(slot);
                    return;
                }
            }
            let connection = builder
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .into_owned();
            if let Err(e) = watcher.watch(connection).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
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
