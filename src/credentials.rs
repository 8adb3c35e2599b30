//! Per-role temporary credentials: AssumeRole with the org's ExternalId, cached per
//! (role ARN, ExternalId), loaded once for any number of concurrent callers, refreshed ahead of
//! expiry off the request path, and failures remembered with a growing backoff.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sdk_sts::error::{ProvideErrorMetadata, SdkError};
use rand::Rng;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::metrics::Metrics;

/// Credentials are not handed out closer than this to their expiry: a Lambda call signed with
/// them must still be accepted when it arrives.
pub const EXPIRY_MARGIN: Duration = Duration::from_secs(30);
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What is asked of STS for one cache key.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct AssumeRequest {
    pub role_arn: String,
    pub external_id: String,
    pub session_name: String,
    pub duration: Duration,
}

// The ExternalId is not a secret, but it is not needed in logs either; the role is.
impl std::fmt::Debug for AssumeRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AssumeRequest")
            .field("role_arn", &self.role_arn)
            .field("session_name", &self.session_name)
            .finish_non_exhaustive()
    }
}

/// How an AssumeRole call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssumeFailure {
    /// STS answered and refused (AccessDenied, a trust policy expecting another ExternalId, …).
    #[error("{code}: {message}")]
    Rejected { code: String, message: String },
    /// STS did not answer usefully (network, timeout, 5xx).
    #[error("{0}")]
    Unavailable(String),
}

/// The source of temporary credentials: STS in production, a fake in tests that inject faults.
pub trait AssumeRole: Send + Sync + 'static {
    fn assume_role<'a>(
        &'a self,
        request: &'a AssumeRequest,
    ) -> BoxFuture<'a, Result<Credentials, AssumeFailure>>;
}

/// AssumeRole through the AWS SDK, signed with the gateway's own (default-chain) credentials.
pub struct Sts {
    client: aws_sdk_sts::Client,
}

impl Sts {
    pub fn new(client: aws_sdk_sts::Client) -> Self {
        Self { client }
    }
}

impl AssumeRole for Sts {
    fn assume_role<'a>(
        &'a self,
        request: &'a AssumeRequest,
    ) -> BoxFuture<'a, Result<Credentials, AssumeFailure>> {
        Box::pin(async move {
            let out = self
                .client
                .assume_role()
                .role_arn(&request.role_arn)
                .external_id(&request.external_id)
                .role_session_name(&request.session_name)
                .duration_seconds(request.duration.as_secs() as i32)
                .send()
                .await
                .map_err(sts_failure)?;
            let c = out.credentials.ok_or_else(|| {
                AssumeFailure::Unavailable("STS answered without credentials".into())
            })?;
            let expiry = SystemTime::try_from(c.expiration).map_err(|_| {
                AssumeFailure::Unavailable("STS answered an unreadable expiration".into())
            })?;
            Ok(Credentials::new(
                c.access_key_id,
                c.secret_access_key,
                Some(c.session_token),
                Some(expiry),
                "glg-assume-role",
            ))
        })
    }
}

fn sts_failure<E: ProvideErrorMetadata + std::error::Error + 'static>(
    err: SdkError<E>,
) -> AssumeFailure {
    match &err {
        SdkError::ServiceError(service) if service.raw().status().as_u16() < 500 => {
            let e = service.err();
            AssumeFailure::Rejected {
                code: e.code().unwrap_or("Unknown").to_owned(),
                message: e.message().unwrap_or("no message").to_owned(),
            }
        }
        SdkError::ServiceError(service) => AssumeFailure::Unavailable(format!(
            "STS answered HTTP {}: {}",
            service.raw().status().as_u16(),
            service.err().message().unwrap_or("no message")
        )),
        SdkError::TimeoutError(_) => AssumeFailure::Unavailable("STS timed out".into()),
        SdkError::DispatchFailure(_) => {
            AssumeFailure::Unavailable(format!("STS unreachable: {}", error_chain(&err)))
        }
        _ => AssumeFailure::Unavailable(error_chain(&err)),
    }
}

/// The message of an error and of each source, joined; SDK errors keep the useful part deep.
pub(crate) fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

/// What a request gets when no credentials can be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialsError {
    #[error("AssumeRole on {role_arn} failed: {failure}")]
    Failed {
        role_arn: String,
        failure: AssumeFailure,
        /// Until when the failure is remembered; asking again sooner is pointless.
        retry_after: Duration,
    },
}

/// Timing of the cache, from `[credentials]`.
#[derive(Debug, Clone, Copy)]
pub struct CacheSettings {
    pub session_duration: Duration,
    pub refresh_before_expiry: Duration,
}

/// One cache key's state. Orgs hold an `Arc<Slot>` so the request path never looks up a map.
pub struct Slot {
    request: AssumeRequest,
    state: Mutex<SlotState>,
}

#[derive(Default)]
struct SlotState {
    current: Option<Cached>,
    /// Present while an AssumeRole is under way; resolves to `true` when it has finished.
    loading: Option<watch::Receiver<bool>>,
    failure: Option<Failure>,
}

struct Cached {
    credentials: Credentials,
    expires_at: Instant,
    refresh_at: Instant,
}

struct Failure {
    failure: AssumeFailure,
    until: Instant,
    attempts: u32,
}

/// The credentials cache. Cheap to share: clone the `Arc`.
pub struct CredentialCache {
    assumer: Arc<dyn AssumeRole>,
    settings: CacheSettings,
    metrics: Arc<Metrics>,
    slots: Mutex<HashMap<(String, String), Arc<Slot>>>,
}

impl CredentialCache {
    pub fn new(
        assumer: Arc<dyn AssumeRole>,
        settings: CacheSettings,
        metrics: Arc<Metrics>,
    ) -> Arc<Self> {
        Arc::new(Self {
            assumer,
            settings,
            metrics,
            slots: Mutex::new(HashMap::new()),
        })
    }

    /// The slot for (role ARN, ExternalId); orgs naming the same pair share it.
    pub fn slot(&self, role_arn: &str, external_id: &str, session_name: &str) -> Arc<Slot> {
        let key = (role_arn.to_owned(), external_id.to_owned());
        let mut slots = self.slots.lock().expect("credential slots lock");
        slots
            .entry(key)
            .or_insert_with(|| {
                Arc::new(Slot {
                    request: AssumeRequest {
                        role_arn: role_arn.to_owned(),
                        external_id: external_id.to_owned(),
                        session_name: session_name.to_owned(),
                        duration: self.settings.session_duration,
                    },
                    state: Mutex::new(SlotState::default()),
                })
            })
            .clone()
    }

    /// Credentials for the slot: cached when valid, else from the one AssumeRole under way.
    pub async fn get(self: &Arc<Self>, slot: &Arc<Slot>) -> Result<Credentials, CredentialsError> {
        let mut waited = false;
        loop {
            let mut loading = {
                // A std Mutex: the critical section never awaits and is a few comparisons long.
                let mut state = slot.state.lock().expect("credential slot lock");
                let now = Instant::now();
                if let Some(cached) = &state.current
                    && now + EXPIRY_MARGIN < cached.expires_at
                {
                    let credentials = cached.credentials.clone();
                    let backing_off = state.failure.as_ref().is_some_and(|f| now < f.until);
                    if now >= cached.refresh_at && state.loading.is_none() && !backing_off {
                        self.metrics
                            .credentials_cache
                            .with_label_values(&["refresh"])
                            .inc();
                        self.start_load(slot, &mut state);
                    }
                    // A request that waited was already counted as a miss.
                    if !waited {
                        let result = if backing_off { "stale" } else { "hit" };
                        self.metrics
                            .credentials_cache
                            .with_label_values(&[result])
                            .inc();
                    }
                    return Ok(credentials);
                }
                if let Some(f) = &state.failure
                    && now < f.until
                {
                    self.metrics
                        .credentials_cache
                        .with_label_values(&["failed"])
                        .inc();
                    return Err(CredentialsError::Failed {
                        role_arn: slot.request.role_arn.clone(),
                        failure: f.failure.clone(),
                        retry_after: f.until - now,
                    });
                }
                if state.loading.is_none() {
                    self.start_load(slot, &mut state);
                }
                if !waited {
                    self.metrics
                        .credentials_cache
                        .with_label_values(&["miss"])
                        .inc();
                }
                state.loading.clone().expect("a load is under way")
            };
            if !waited {
                waited = true;
                self.metrics.requests_waited_on_sts.inc();
            }
            // The load runs in its own task: a caller that gives up (deadline) cancels nothing.
            if loading.wait_for(|done| *done).await.is_err() {
                // The loading task ended without reporting; the loop starts a fresh load.
                slot.state.lock().expect("credential slot lock").loading = None;
            }
        }
    }

    fn start_load(self: &Arc<Self>, slot: &Arc<Slot>, state: &mut SlotState) {
        let (done, loading) = watch::channel(false);
        state.loading = Some(loading);
        let cache = Arc::clone(self);
        let slot = Arc::clone(slot);
        tokio::spawn(async move {
            let started = Instant::now();
            let result = cache.assumer.assume_role(&slot.request).await;
            let m = &cache.metrics;
            m.sts_assume_role_duration
                .observe(started.elapsed().as_secs_f64());
            let outcome = match &result {
                Ok(_) => "ok",
                Err(AssumeFailure::Rejected { .. }) => "rejected",
                Err(AssumeFailure::Unavailable(_)) => "unavailable",
            };
            m.sts_assume_role.with_label_values(&[outcome]).inc();
            let mut state = slot.state.lock().expect("credential slot lock");
            let now = Instant::now();
            match result {
                Ok(credentials) => {
                    let lifetime = credentials
                        .expiry()
                        .and_then(|at| at.duration_since(SystemTime::now()).ok())
                        .unwrap_or(cache.settings.session_duration);
                    let expires_at = now + lifetime;
                    let refresh_at = cache.refresh_at(expires_at);
                    tracing::info!(
                        role_arn = %slot.request.role_arn,
                        expires_in_s = lifetime.as_secs(),
                        "assumed role"
                    );
                    state.current = Some(Cached {
                        credentials,
                        expires_at,
                        refresh_at,
                    });
                    state.failure = None;
                }
                Err(failure) => {
                    let attempts = state.failure.as_ref().map_or(0, |f| f.attempts) + 1;
                    let backoff = backoff(attempts);
                    tracing::warn!(
                        role_arn = %slot.request.role_arn,
                        error = %failure,
                        attempts,
                        retry_in_ms = backoff.as_millis() as u64,
                        "AssumeRole failed"
                    );
                    state.failure = Some(Failure {
                        failure,
                        until: now + backoff,
                        attempts,
                    });
                }
            }
            state.loading = None;
            drop(state);
            let _ = done.send(true);
        });
    }

    /// When to refresh: `refresh_before_expiry` ahead, less up to a fifth of it at random so
    /// that many keys loaded together do not all refresh in the same second.
    fn refresh_at(&self, expires_at: Instant) -> Instant {
        let window = self.settings.refresh_before_expiry;
        let jitter = window.mul_f64(rand::rng().random_range(0.0..0.2));
        expires_at
            .checked_sub(window - jitter)
            .unwrap_or_else(Instant::now)
    }
}

/// Exponential backoff with jitter: about 1 s, 2 s, 4 s … capped at 60 s.
fn backoff(attempts: u32) -> Duration {
    let base = FIRST_BACKOFF
        .saturating_mul(1 << attempts.saturating_sub(1).min(6))
        .min(MAX_BACKOFF);
    base.mul_f64(rand::rng().random_range(0.75..1.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// An STS that counts calls and answers as scripted.
    struct FakeSts {
        calls: AtomicUsize,
        lifetime: Duration,
        delay: Duration,
        fail: Mutex<Option<AssumeFailure>>,
    }

    impl FakeSts {
        fn new(lifetime: Duration) -> Arc<Self> {
            Arc::new(Self {
                calls: AtomicUsize::new(0),
                lifetime,
                delay: Duration::from_millis(50),
                fail: Mutex::new(None),
            })
        }
        fn calls(&self) -> usize {
            self.calls.load(Ordering::SeqCst)
        }
    }

    impl AssumeRole for FakeSts {
        fn assume_role<'a>(
            &'a self,
            _request: &'a AssumeRequest,
        ) -> BoxFuture<'a, Result<Credentials, AssumeFailure>> {
            Box::pin(async move {
                let n = self.calls.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(self.delay).await;
                if let Some(failure) = self.fail.lock().unwrap().clone() {
                    return Err(failure);
                }
                Ok(Credentials::new(
                    format!("AKID{n}"),
                    "secret",
                    Some("token".into()),
                    Some(SystemTime::now() + self.lifetime),
                    "fake",
                ))
            })
        }
    }

    fn cache(sts: &Arc<FakeSts>) -> Arc<CredentialCache> {
        CredentialCache::new(
            sts.clone(),
            CacheSettings {
                session_duration: Duration::from_secs(3600),
                refresh_before_expiry: Duration::from_secs(300),
            },
            Arc::new(Metrics::new(&prometheus::Registry::new()).unwrap()),
        )
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_cold_requests_share_one_assume_role() {
        let sts = FakeSts::new(Duration::from_secs(3600));
        let cache = cache(&sts);
        let slot = cache.slot("arn:aws:iam::111122223333:role/r", "org", "glg-org");
        let tasks: Vec<_> = (0..1000)
            .map(|_| {
                let (cache, slot) = (cache.clone(), slot.clone());
                tokio::spawn(async move { cache.get(&slot).await.unwrap() })
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await.unwrap().access_key_id(), "AKID0");
        }
        assert_eq!(sts.calls(), 1);
        assert_eq!(cache.metrics.requests_waited_on_sts.get(), 1000);
    }

    #[tokio::test(start_paused = true)]
    async fn keys_are_role_and_external_id() {
        let sts = FakeSts::new(Duration::from_secs(3600));
        let cache = cache(&sts);
        let a = cache.slot("arn:aws:iam::111122223333:role/r", "org-a", "glg-org-a");
        let b = cache.slot("arn:aws:iam::111122223333:role/r", "org-b", "glg-org-b");
        let a2 = cache.slot("arn:aws:iam::111122223333:role/r", "org-a", "glg-org-a");
        assert!(Arc::ptr_eq(&a, &a2));
        assert!(!Arc::ptr_eq(&a, &b));
        let ka = cache.get(&a).await.unwrap();
        let kb = cache.get(&b).await.unwrap();
        assert_ne!(ka.access_key_id(), kb.access_key_id());
        assert_eq!(sts.calls(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn refreshes_ahead_of_expiry_without_making_requests_wait() {
        let sts = FakeSts::new(Duration::from_secs(3600));
        let cache = cache(&sts);
        let slot = cache.slot("arn:aws:iam::111122223333:role/r", "org", "glg-org");
        assert_eq!(cache.get(&slot).await.unwrap().access_key_id(), "AKID0");
        // Well before the refresh window: served from the cache, no STS call.
        tokio::time::advance(Duration::from_secs(3000)).await;
        assert_eq!(cache.get(&slot).await.unwrap().access_key_id(), "AKID0");
        assert_eq!(sts.calls(), 1);
        // Inside the window (≤ 240-300 s before expiry, with jitter): the old credentials
        // answer at once and a background refresh starts.
        tokio::time::advance(Duration::from_secs(361)).await;
        assert_eq!(cache.get(&slot).await.unwrap().access_key_id(), "AKID0");
        // Sleeping (not advancing) lets the refresh task run to completion.
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(sts.calls(), 2);
        assert_eq!(cache.get(&slot).await.unwrap().access_key_id(), "AKID1");
        assert_eq!(
            cache.metrics.requests_waited_on_sts.get(),
            1,
            "only the cold start waited"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_denied_role_is_remembered_with_backoff() {
        let sts = FakeSts::new(Duration::from_secs(3600));
        *sts.fail.lock().unwrap() = Some(AssumeFailure::Rejected {
            code: "AccessDenied".into(),
            message: "not authorized".into(),
        });
        let cache = cache(&sts);
        let slot = cache.slot("arn:aws:iam::111122223333:role/r", "org", "glg-org");
        let Err(CredentialsError::Failed { retry_after, .. }) = cache.get(&slot).await else {
            panic!("a denied role must fail");
        };
        assert!(retry_after > Duration::ZERO && retry_after <= FIRST_BACKOFF);
        // Within the backoff: answered from memory, STS not asked again.
        for _ in 0..100 {
            assert!(cache.get(&slot).await.is_err());
        }
        assert_eq!(sts.calls(), 1);
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(cache.get(&slot).await.is_err());
        assert_eq!(sts.calls(), 2);
        // Recovers on the first success after the backoff.
        *sts.fail.lock().unwrap() = None;
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(cache.get(&slot).await.is_ok());
        assert_eq!(sts.calls(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_refresh_keeps_serving_valid_credentials() {
        let sts = FakeSts::new(Duration::from_secs(3600));
        let cache = cache(&sts);
        let slot = cache.slot("arn:aws:iam::111122223333:role/r", "org", "glg-org");
        cache.get(&slot).await.unwrap();
        *sts.fail.lock().unwrap() = Some(AssumeFailure::Unavailable("down".into()));
        tokio::time::advance(Duration::from_secs(3400)).await;
        for _ in 0..50 {
            assert_eq!(cache.get(&slot).await.unwrap().access_key_id(), "AKID0");
            tokio::time::advance(Duration::from_secs(3)).await;
        }
        assert!(sts.calls() > 2, "refresh is retried");
        assert!(sts.calls() < 20, "with backoff, not on every request");
        // Past expiry less the margin, the failure is what a request gets.
        tokio::time::advance(Duration::from_secs(200)).await;
        assert!(cache.get(&slot).await.is_err());
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert!(backoff(1) <= FIRST_BACKOFF);
        assert!(backoff(3) > backoff(1));
        assert!(backoff(30) <= MAX_BACKOFF);
    }
}
