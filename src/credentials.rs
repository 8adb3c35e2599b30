//! Per-role temporary credentials: AssumeRole with the org's ExternalId, cached per
//! (role ARN, ExternalId), loaded once for any number of concurrent callers, refreshed ahead of
//! expiry off the request path, and failures remembered with a growing backoff.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sdk_sts::error::{ProvideErrorMetadata, SdkError};
use rand::Rng;
use tokio::sync::{Semaphore, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{Instant, MissedTickBehavior};

use crate::config::CredentialsConfig;
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
            // A truncated or malformed answer can parse into empty fields; never use those.
            if c.access_key_id.is_empty()
                || c.secret_access_key.is_empty()
                || c.session_token.is_empty()
                || expiry <= SystemTime::now()
            {
                return Err(AssumeFailure::Unavailable(
                    "STS answered incomplete or expired credentials".into(),
                ));
            }
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
    pub refresh_jitter: Duration,
    pub idle_timeout: Duration,
}

impl From<&CredentialsConfig> for CacheSettings {
    fn from(c: &CredentialsConfig) -> Self {
        Self {
            session_duration: c.session_duration,
            refresh_before_expiry: c.refresh_before_expiry,
            refresh_jitter: c.refresh_jitter,
            idle_timeout: c.idle_timeout,
        }
    }
}

/// How often the background refresher looks at every key.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// One cache key's state. Orgs hold an `Arc<Slot>` so the request path never looks up a map.
pub struct Slot {
    request: AssumeRequest,
    state: Mutex<SlotState>,
}

impl Slot {
    /// What is asked of STS for this key.
    pub fn request(&self) -> &AssumeRequest {
        &self.request
    }
}

#[derive(Default)]
struct SlotState {
    current: Option<Cached>,
    /// Present while an AssumeRole is under way; resolves to `true` when it has finished.
    loading: Option<watch::Receiver<bool>>,
    failure: Option<Failure>,
    /// The last request (or prefetch) that wanted these credentials; idle keys are evicted.
    last_used: Option<Instant>,
}

impl SlotState {
    /// The cached credentials if they may still be handed out.
    fn usable(&self, now: Instant) -> Option<&Cached> {
        self.current
            .as_ref()
            .filter(|c| now + EXPIRY_MARGIN < c.expires_at)
    }

    fn backing_off(&self, now: Instant) -> bool {
        self.failure.as_ref().is_some_and(|f| now < f.until)
    }

    /// A refresh is due and nothing stands in its way.
    fn refresh_due(&self, now: Instant) -> bool {
        self.usable(now).is_some_and(|c| now >= c.refresh_at)
            && self.loading.is_none()
            && !self.backing_off(now)
    }
}

struct Cached {
    session: Arc<Session>,
    expires_at: Instant,
    refresh_at: Instant,
}

/// Temporary credentials, with the SigV4 signing keys derived from them (one per day and
/// region) so that a request signs with two HMACs instead of six.
pub struct Session {
    credentials: Credentials,
    /// The session token as a header value, checked once rather than on every request.
    token_header: Option<Result<http::HeaderValue, http::header::InvalidHeaderValue>>,
    /// Usually one: sessions seldom sign for more than one region a day.
    signing_keys: Mutex<Vec<SigningKey>>,
}

/// A derived Lambda signing key and the day (`YYYYMMDD`) and region it is for.
struct SigningKey {
    day: [u8; 8],
    region: Box<str>,
    key: [u8; 32],
}

impl Session {
    pub fn new(credentials: Credentials) -> Self {
        let token_header = credentials.session_token().map(|token| {
            let mut value = http::HeaderValue::from_str(token)?;
            value.set_sensitive(true);
            Ok(value)
        });
        Self {
            credentials,
            token_header,
            signing_keys: Mutex::new(Vec::new()),
        }
    }

    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    /// `X-Amz-Security-Token`'s value, when the credentials have a session token; an error
    /// when that token cannot be sent as a header.
    pub fn token_header(
        &self,
    ) -> Option<Result<&http::HeaderValue, &http::header::InvalidHeaderValue>> {
        self.token_header.as_ref().map(Result::as_ref)
    }

    /// The Lambda signing key for `date` (`YYYYMMDD`) and `region`.
    pub fn signing_key(&self, date: &str, region: &str) -> [u8; 32] {
        let derive = || {
            crate::sigv4::signing_key(self.credentials.secret_access_key(), date, region, "lambda")
        };
        let Ok(day) = <[u8; 8]>::try_from(date.as_bytes()) else {
            return derive();
        };
        let mut keys = self.signing_keys.lock().expect("signing keys lock");
        if let Some(found) = keys.iter().find(|k| k.day == day && *k.region == *region) {
            return found.key;
        }
        let key = derive();
        // Credentials live hours, not days: past a few dozen keys, the old days' are dead.
        if keys.len() >= 32 {
            keys.clear();
        }
        // One at a time: most sessions only ever sign for one region a day, and a 10,000-org
        // gateway keeps 10,000 of these lists.
        keys.reserve_exact(1);
        keys.push(SigningKey {
            day,
            region: region.into(),
            key,
        });
        key
    }
}

// Credentials' own Debug redacts the secret; the derived keys are secrets too.
impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("credentials", &self.credentials)
            .finish_non_exhaustive()
    }
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
    /// Weak: a slot lives as long as a configuration's orgs hold it, and no longer.
    slots: Mutex<HashMap<(String, String), Weak<Slot>>>,
}

impl CredentialCache {
    /// Creates the cache and its background refresher (which ends when the cache is dropped).
    pub fn new(
        assumer: Arc<dyn AssumeRole>,
        settings: CacheSettings,
        metrics: Arc<Metrics>,
    ) -> Arc<Self> {
        let cache = Arc::new(Self {
            assumer,
            settings,
            metrics,
            slots: Mutex::new(HashMap::new()),
        });
        tokio::spawn(refresher(Arc::downgrade(&cache)));
        cache
    }

    /// The slot for (role ARN, ExternalId); orgs naming the same pair share it.
    pub fn slot(&self, role_arn: &str, external_id: &str, session_name: &str) -> Arc<Slot> {
        let key = (role_arn.to_owned(), external_id.to_owned());
        let mut slots = self.slots.lock().expect("credential slots lock");
        if let Some(slot) = slots.get(&key).and_then(Weak::upgrade) {
            return slot;
        }
        let slot = Arc::new(Slot {
            request: AssumeRequest {
                role_arn: role_arn.to_owned(),
                external_id: external_id.to_owned(),
                session_name: session_name.to_owned(),
                duration: self.settings.session_duration,
            },
            state: Mutex::new(SlotState::default()),
        });
        slots.insert(key, Arc::downgrade(&slot));
        slot
    }

    /// The STS behind the cache, for checks that must not use cached credentials.
    pub fn assumer(&self) -> &dyn AssumeRole {
        &*self.assumer
    }

    /// How many keys some configuration still holds.
    pub fn len(&self) -> usize {
        let slots = self.slots.lock().expect("credential slots lock");
        slots.values().filter(|w| w.strong_count() > 0).count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Credentials for the slot: cached when valid, else from the one AssumeRole under way.
    pub async fn get(self: &Arc<Self>, slot: &Arc<Slot>) -> Result<Arc<Session>, CredentialsError> {
        let mut waited = false;
        loop {
            let mut loading = {
                // A std Mutex: the critical section never awaits and is a few comparisons long.
                let mut state = slot.state.lock().expect("credential slot lock");
                let now = Instant::now();
                state.last_used = Some(now);
                if let Some(cached) = state.usable(now) {
                    let session = cached.session.clone();
                    // The refresher would start this within a second; a request that sees it
                    // first starts it now. Either way nobody waits for it.
                    if state.refresh_due(now) {
                        self.metrics
                            .credentials_cache
                            .with_label_values(&["refresh"])
                            .inc();
                        self.start_load(slot, &mut state);
                    }
                    // A request that waited was already counted as a miss.
                    if !waited {
                        let result = if state.backing_off(now) {
                            "stale"
                        } else {
                            "hit"
                        };
                        self.metrics
                            .credentials_cache
                            .with_label_values(&[result])
                            .inc();
                    }
                    return Ok(session);
                }
                if let Some(f) = state.failure.as_ref().filter(|f| now < f.until) {
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

    /// Loads credentials for `slots` in the background, at most `concurrency` AssumeRole calls
    /// at a time. Requests are served meanwhile: a request for a key being prefetched waits
    /// for that same call, one for a warm key does not wait at all.
    pub fn prefetch(self: &Arc<Self>, slots: Vec<Arc<Slot>>, concurrency: usize) -> JoinHandle<()> {
        let cache = Arc::clone(self);
        tokio::spawn(async move {
            let permits = Arc::new(Semaphore::new(concurrency.max(1)));
            let mut tasks = JoinSet::new();
            for slot in slots {
                let permit = permits.clone().acquire_owned().await.expect("never closed");
                let cache = cache.clone();
                tasks.spawn(async move {
                    cache.warm(&slot).await;
                    drop(permit);
                });
            }
            while tasks.join_next().await.is_some() {}
            tracing::info!("credential prefetch finished");
        })
    }

    /// Makes sure the slot holds credentials (or a fresh failure), without counting a request.
    async fn warm(self: &Arc<Self>, slot: &Arc<Slot>) {
        let mut loading = {
            let mut state = slot.state.lock().expect("credential slot lock");
            let now = Instant::now();
            // Prefetched keys count as in use, so they are kept fresh for one idle period.
            state.last_used.get_or_insert(now);
            if state.usable(now).is_some() || state.backing_off(now) {
                return;
            }
            if state.loading.is_none() {
                self.start_load(slot, &mut state);
            }
            state.loading.clone().expect("a load is under way")
        };
        let _ = loading.wait_for(|done| *done).await;
    }

    /// One pass of the background refresher: refresh keys in use whose time has come (and
    /// retry failed refreshes after their backoff), drop the credentials of idle keys, and
    /// forget keys no configuration holds any more.
    fn sweep(self: &Arc<Self>) {
        let now = Instant::now();
        let slots: Vec<Arc<Slot>> = {
            let mut slots = self.slots.lock().expect("credential slots lock");
            slots.retain(|_, slot| slot.strong_count() > 0);
            slots.values().filter_map(Weak::upgrade).collect()
        };
        for slot in slots {
            let mut state = slot.state.lock().expect("credential slot lock");
            let idle = state
                .last_used
                .is_none_or(|used| now.duration_since(used) >= self.settings.idle_timeout);
            if idle {
                if state.current.take().is_some() {
                    tracing::debug!(role_arn = %slot.request.role_arn, "idle credentials evicted");
                }
                state.failure = None;
                continue;
            }
            if state.refresh_due(now) {
                self.metrics
                    .credentials_cache
                    .with_label_values(&["refresh"])
                    .inc();
                self.start_load(&slot, &mut state);
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
                        refresh_in_s = refresh_at.saturating_duration_since(now).as_secs(),
                        "assumed role"
                    );
                    state.current = Some(Cached {
                        session: Arc::new(Session::new(credentials)),
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
                        still_valid = state.usable(now).is_some(),
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

    /// When to refresh: `refresh_before_expiry` ahead, plus up to `refresh_jitter` at random
    /// so that many keys loaded together do not all refresh in the same second.
    fn refresh_at(&self, expires_at: Instant) -> Instant {
        let jitter = self
            .settings
            .refresh_jitter
            .mul_f64(rand::rng().random_range(0.0..=1.0));
        expires_at
            .checked_sub(self.settings.refresh_before_expiry)
            .map_or_else(Instant::now, |at| at + jitter)
    }
}

/// Runs `sweep` every [`SWEEP_INTERVAL`] for as long as the cache exists.
async fn refresher(cache: Weak<CredentialCache>) {
    let mut tick = tokio::time::interval(SWEEP_INTERVAL);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(cache) = cache.upgrade() else { return };
        cache.sweep();
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

    const HOUR: Duration = Duration::from_secs(3600);

    /// An STS that counts calls (and the most at once) and answers as scripted.
    struct FakeSts {
        calls: AtomicUsize,
        inflight: AtomicUsize,
        max_inflight: AtomicUsize,
        lifetime: Duration,
        delay: Duration,
        fail: Mutex<Option<AssumeFailure>>,
    }

    impl FakeSts {
        fn new(lifetime: Duration) -> Arc<Self> {
            Arc::new(Self {
                calls: AtomicUsize::new(0),
                inflight: AtomicUsize::new(0),
                max_inflight: AtomicUsize::new(0),
                lifetime,
                delay: Duration::from_millis(50),
                fail: Mutex::new(None),
            })
        }
        fn calls(&self) -> usize {
            self.calls.load(Ordering::SeqCst)
        }
        fn fail_with(&self, failure: Option<AssumeFailure>) {
            *self.fail.lock().unwrap() = failure;
        }
    }

    impl AssumeRole for FakeSts {
        fn assume_role<'a>(
            &'a self,
            _request: &'a AssumeRequest,
        ) -> BoxFuture<'a, Result<Credentials, AssumeFailure>> {
            Box::pin(async move {
                let n = self.calls.fetch_add(1, Ordering::SeqCst);
                let now = self.inflight.fetch_add(1, Ordering::SeqCst) + 1;
                self.max_inflight.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(self.delay).await;
                self.inflight.fetch_sub(1, Ordering::SeqCst);
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

    fn settings() -> CacheSettings {
        CacheSettings {
            session_duration: HOUR,
            refresh_before_expiry: Duration::from_secs(300),
            refresh_jitter: Duration::from_secs(60),
            idle_timeout: HOUR,
        }
    }

    fn cache_with(sts: &Arc<FakeSts>, settings: CacheSettings) -> Arc<CredentialCache> {
        let metrics = Metrics::new(&prometheus::Registry::new(), true).unwrap();
        CredentialCache::new(sts.clone(), settings, Arc::new(metrics))
    }

    fn cache(sts: &Arc<FakeSts>) -> Arc<CredentialCache> {
        cache_with(sts, settings())
    }

    fn slot(cache: &CredentialCache) -> Arc<Slot> {
        cache.slot("arn:aws:iam::111122223333:role/r", "org", "glg-org")
    }

    /// `n` slots for distinct roles.
    fn many_slots(cache: &CredentialCache, n: usize) -> Vec<Arc<Slot>> {
        (0..n)
            .map(|i| {
                cache.slot(
                    &format!("arn:aws:iam::111122223333:role/r{i}"),
                    "org",
                    "glg",
                )
            })
            .collect()
    }

    fn key(result: Result<Arc<Session>, CredentialsError>) -> String {
        result
            .expect("credentials")
            .credentials()
            .access_key_id()
            .to_owned()
    }

    fn waited(cache: &CredentialCache) -> u64 {
        cache.metrics.requests_waited_on_sts.get()
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_cold_requests_share_one_assume_role() {
        let sts = FakeSts::new(HOUR);
        let cache = cache(&sts);
        let slot = slot(&cache);
        let tasks: Vec<_> = (0..1000)
            .map(|_| {
                let (cache, slot) = (cache.clone(), slot.clone());
                tokio::spawn(async move { key(cache.get(&slot).await) })
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await.unwrap(), "AKID0");
        }
        assert_eq!(sts.calls(), 1);
        assert_eq!(waited(&cache), 1000);
    }

    #[tokio::test(start_paused = true)]
    async fn keys_are_role_and_external_id() {
        let sts = FakeSts::new(HOUR);
        let cache = cache(&sts);
        let a = cache.slot("arn:aws:iam::111122223333:role/r", "org-a", "glg-org-a");
        let b = cache.slot("arn:aws:iam::111122223333:role/r", "org-b", "glg-org-b");
        let a2 = cache.slot("arn:aws:iam::111122223333:role/r", "org-a", "glg-org-a");
        assert!(Arc::ptr_eq(&a, &a2));
        assert!(!Arc::ptr_eq(&a, &b));
        assert_ne!(key(cache.get(&a).await), key(cache.get(&b).await));
        assert_eq!(sts.calls(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_in_the_refresh_window_gets_old_credentials_and_starts_a_refresh() {
        let sts = FakeSts::new(HOUR);
        let cache = cache(&sts);
        let slot = slot(&cache);
        assert_eq!(key(cache.get(&slot).await), "AKID0");
        // Well before the window: from the cache.
        tokio::time::advance(Duration::from_secs(3000)).await;
        assert_eq!(key(cache.get(&slot).await), "AKID0");
        assert_eq!(sts.calls(), 1);
        // In the window (300 s before expiry, up to 60 s later with jitter).
        tokio::time::advance(Duration::from_secs(361)).await;
        assert_eq!(key(cache.get(&slot).await), "AKID0");
        // Sleeping (not advancing) lets the refresh task run to completion.
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(sts.calls(), 2);
        assert_eq!(key(cache.get(&slot).await), "AKID1");
        assert_eq!(waited(&cache), 1, "only the cold start waited");
    }

    #[tokio::test(start_paused = true)]
    async fn keys_in_use_are_refreshed_in_the_background_without_traffic_in_the_window() {
        let sts = FakeSts::new(HOUR);
        let cache = cache(&sts);
        let slot = slot(&cache);
        for _ in 0..5 {
            // One request every 50 minutes: never one inside a refresh window of 5 minutes.
            cache.get(&slot).await.unwrap();
            tokio::time::sleep(Duration::from_secs(3000)).await;
        }
        assert_eq!(waited(&cache), 1, "after warm-up no request waited on STS");
        // 5 × 50 min = 250 min of use with one-hour credentials: at least 4 refreshes.
        assert!(sts.calls() >= 5, "calls: {}", sts.calls());
        assert!(sts.calls() <= 6, "calls: {}", sts.calls());
    }

    #[tokio::test(start_paused = true)]
    async fn an_sts_outage_serves_valid_credentials_then_fails_then_recovers() {
        let sts = FakeSts::new(HOUR);
        let cache = cache(&sts);
        let slot = slot(&cache);
        cache.get(&slot).await.unwrap();
        sts.fail_with(Some(AssumeFailure::Unavailable("STS unreachable".into())));
        // Through the whole refresh window, requests keep getting the valid credentials.
        tokio::time::sleep(Duration::from_secs(3300)).await;
        for _ in 0..90 {
            assert_eq!(key(cache.get(&slot).await), "AKID0");
            tokio::time::sleep(Duration::from_secs(3)).await;
        }
        let calls = sts.calls();
        assert!(calls > 3, "the refresh is retried: {calls}");
        assert!(calls < 15, "with backoff, not every second: {calls}");
        // Past expiry (less the margin): the documented failure, with a Retry-After.
        tokio::time::sleep(Duration::from_secs(60)).await;
        let Err(CredentialsError::Failed {
            failure,
            retry_after,
            ..
        }) = cache.get(&slot).await
        else {
            panic!("expired credentials must not be served");
        };
        assert!(matches!(failure, AssumeFailure::Unavailable(_)));
        assert!(retry_after <= MAX_BACKOFF);
        // STS returns: the first attempt after the backoff succeeds.
        sts.fail_with(None);
        tokio::time::sleep(MAX_BACKOFF).await;
        assert!(cache.get(&slot).await.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn a_denied_role_is_remembered_with_a_growing_backoff() {
        let sts = FakeSts::new(HOUR);
        sts.fail_with(Some(AssumeFailure::Rejected {
            code: "AccessDenied".into(),
            message: "not authorized".into(),
        }));
        let cache = cache(&sts);
        let slot = slot(&cache);
        let Err(CredentialsError::Failed { retry_after, .. }) = cache.get(&slot).await else {
            panic!("a denied role must fail");
        };
        assert!(retry_after > Duration::ZERO && retry_after <= FIRST_BACKOFF);
        // Within the backoff: answered from memory, STS not asked again.
        for _ in 0..100 {
            assert!(cache.get(&slot).await.is_err());
        }
        assert_eq!(sts.calls(), 1);
        // A request per second for a minute: the backoff doubles, so about six calls.
        for _ in 0..60 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            assert!(cache.get(&slot).await.is_err());
        }
        let calls = sts.calls();
        assert!((4..=8).contains(&calls), "calls: {calls}");
        // Recovers on the first success after the backoff.
        sts.fail_with(None);
        tokio::time::sleep(MAX_BACKOFF).await;
        assert!(cache.get(&slot).await.is_ok());
        assert_eq!(sts.calls(), calls + 1);
    }

    #[tokio::test(start_paused = true)]
    async fn idle_keys_are_not_refreshed_and_are_evicted() {
        let sts = FakeSts::new(HOUR);
        let cache = cache_with(
            &sts,
            CacheSettings {
                idle_timeout: Duration::from_secs(600),
                ..settings()
            },
        );
        let slot = slot(&cache);
        cache.get(&slot).await.unwrap();
        tokio::time::sleep(Duration::from_secs(601)).await;
        assert!(slot.state.lock().unwrap().current.is_none(), "evicted");
        // Past the refresh window and expiry: nobody used it, so STS was not asked.
        tokio::time::sleep(2 * HOUR).await;
        assert_eq!(sts.calls(), 1);
        // The next request loads it again.
        assert_eq!(key(cache.get(&slot).await), "AKID1");
        assert_eq!(waited(&cache), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn prefetch_warms_ten_thousand_keys_with_bounded_concurrency() {
        let sts = FakeSts::new(HOUR);
        let cache = cache(&sts);
        let slots = many_slots(&cache, 10_000);
        let warm = slots[0].clone();
        let done = cache.prefetch(slots.clone(), 8);
        // A request during the prefetch for a key it already warmed does not wait.
        tokio::time::sleep(Duration::from_secs(1)).await;
        cache.get(&warm).await.unwrap();
        assert_eq!(waited(&cache), 0);
        done.await.unwrap();
        assert_eq!(sts.calls(), 10_000);
        assert!(sts.max_inflight.load(Ordering::SeqCst) <= 8);
        for slot in &slots {
            assert!(slot.state.lock().unwrap().usable(Instant::now()).is_some());
        }
        assert_eq!(cache.len(), 10_000);
        assert_eq!(waited(&cache), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn keys_are_forgotten_when_no_configuration_holds_them() {
        let sts = FakeSts::new(HOUR);
        let cache = cache(&sts);
        let slots = many_slots(&cache, 100);
        assert_eq!(cache.len(), 100);
        drop(slots);
        tokio::time::sleep(SWEEP_INTERVAL * 2).await;
        assert!(cache.is_empty());
        assert!(
            cache.slots.lock().unwrap().is_empty(),
            "the map itself shrinks"
        );
    }

    #[test]
    fn signing_keys_are_derived_once_per_day_and_region() {
        let session = Session::new(Credentials::new("AKID", "secret", None, None, "t"));
        let a = session.signing_key("20261121", "eu-west-1");
        assert_eq!(
            a,
            crate::sigv4::signing_key("secret", "20261121", "eu-west-1", "lambda")
        );
        assert_eq!(session.signing_key("20261121", "eu-west-1"), a);
        assert_ne!(session.signing_key("20261122", "eu-west-1"), a);
        assert_ne!(session.signing_key("20261121", "us-east-1"), a);
        assert_eq!(session.signing_keys.lock().unwrap().len(), 3);
        let debug = format!("{session:?}");
        assert!(
            !debug.contains("s3cr3t-value") && !debug.contains(&hex::encode(a)),
            "{debug}"
        );
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert!(backoff(1) <= FIRST_BACKOFF);
        assert!(backoff(3) > backoff(1));
        assert!(backoff(30) <= MAX_BACKOFF);
    }

    #[tokio::test(start_paused = true)]
    async fn refresh_times_spread_over_the_jitter() {
        let sts = FakeSts::new(HOUR);
        let cache = cache(&sts);
        let expires = Instant::now() + HOUR;
        let times: Vec<_> = (0..200).map(|_| cache.refresh_at(expires)).collect();
        let earliest = expires - Duration::from_secs(300);
        assert!(
            times
                .iter()
                .all(|t| *t >= earliest && *t <= earliest + Duration::from_secs(60))
        );
        let distinct: std::collections::HashSet<_> =
            times.iter().map(|t| (*t - earliest).as_secs()).collect();
        assert!(
            distinct.len() > 20,
            "spread over many seconds: {}",
            distinct.len()
        );
    }
}
