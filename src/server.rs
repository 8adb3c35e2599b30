//! Assembly and lifetime: load the AWS base config, build the gateway from a validated config,
//! serve the public and admin listeners, drain on shutdown.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::timeout::TimeoutConfig;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::auth::{self, Authenticator};
use crate::config::Config;
use crate::credentials::{AssumeRole, CredentialCache, Sts};
use crate::invoke::Invoker;
use crate::metrics::Metrics;
use crate::tenants::{self, Org};
use crate::{admin, ingress};

/// Everything the request path reads, built once per configuration.
pub struct Gateway {
    pub orgs: Vec<Org>,
    pub auth: Authenticator,
    pub cache: Arc<CredentialCache>,
    pub invoker: Invoker,
    pub metrics: Arc<Metrics>,
    pub max_body_bytes: usize,
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
}

impl StartError {
    /// 64 (EX_USAGE) when the configuration is what must change, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            StartError::NoRegion | StartError::Bind { .. } => crate::cli::EXIT_CONFIG,
            StartError::Metrics(_) | StartError::Serve(_) => 1,
        }
    }
}

/// Builds the gateway from `config` with the AWS default chain, binds both listeners and serves
/// until `shutdown` resolves.
pub async fn start(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), StartError> {
    let sdk = aws_base_config(&config).await?;
    let bind = |addr| async move {
        TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind { addr, source })
    };
    let public = bind(config.server.listen).await?;
    let admin = bind(config.server.admin_listen).await?;
    let metrics = Arc::new(Metrics::new(&prometheus::Registry::new())?);
    let gateway = Gateway::new(&config, sdk.clone(), sts(&sdk), metrics);
    tracing::info!(
        listen = %public.local_addr()?,
        admin = %admin.local_addr()?,
        orgs = config.orgs.len(),
        "genesys-lambda-gateway serving"
    );
    run(
        gateway,
        public,
        admin,
        config.server.shutdown_grace,
        shutdown,
    )
    .await?;
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
        config: &Config,
        sdk: aws_config::SdkConfig,
        assumer: Arc<dyn AssumeRole>,
        metrics: Arc<Metrics>,
    ) -> Arc<Self> {
        let cache = CredentialCache::new(assumer, (&config.credentials).into(), metrics.clone());
        let orgs = tenants::build(config, &cache);
        let auth = Authenticator::new(config.orgs.iter().map(|org| {
            let hashes = org
                .token_sha256
                .as_slice()
                .iter()
                .map(|h| auth::parse_hash(h).expect("validated config"))
                .collect();
            (org.id.as_str(), hashes)
        }));
        if config.credentials.prefetch {
            let slots = orgs.iter().map(|org| org.credentials.clone()).collect();
            cache.prefetch(slots, config.credentials.prefetch_concurrency);
        }
        let invoker = Invoker::new(sdk, metrics.clone());
        // Lambda clients for every configured region up front, so no request pays for one.
        for org in &orgs {
            for function in org.functions.values() {
                invoker.client(&function.arn.region);
            }
        }
        Arc::new(Gateway {
            orgs,
            auth,
            cache,
            invoker,
            metrics,
            max_body_bytes: config.server.max_body_bytes,
        })
    }
}

/// Serves until `shutdown` resolves, then drains: readiness turns 503, the listeners stop
/// accepting, in-flight requests get up to `grace` to finish.
pub async fn run(
    gateway: Arc<Gateway>,
    public: TcpListener,
    admin_listener: TcpListener,
    grace: Duration,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let ready = Arc::new(AtomicBool::new(true));
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let admin = axum::serve(
        admin_listener,
        admin::router(gateway.metrics.clone(), ready.clone()),
    )
    .with_graceful_shutdown(stopped(stop_rx.clone()));
    let public =
        axum::serve(public, ingress::router(gateway)).with_graceful_shutdown(stopped(stop_rx));
    let admin = tokio::spawn(async move { admin.await });
    let drain = async {
        shutdown.await;
        tracing::info!(
            grace_s = grace.as_secs(),
            "shutting down; draining in-flight requests"
        );
        ready.store(false, Ordering::SeqCst);
        let _ = stop_tx.send(true);
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        served = public => served?,
        () = drain => tracing::warn!("shutdown grace expired with requests still in flight"),
    }
    admin.abort();
    Ok(())
}
