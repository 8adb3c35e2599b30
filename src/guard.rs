//! Brute-force guard: too many failed authentications from one peer address for one claimed org
//! within a window answer 429 until the window ends.
//!
//! Keyed by (peer IP, claimed org), not by IP alone: Genesys calls every org from shared egress
//! addresses, so one org's wrong secret must not lock out the others.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// Failures allowed per key and window before the key is refused.
pub const MAX_FAILURES: u32 = 10;
pub const WINDOW: Duration = Duration::from_secs(60);
/// Keys tracked at most; past it the oldest windows are forgotten (an attacker varying the
/// claimed org cannot grow memory without bound).
pub const MAX_KEYS: usize = 100_000;

struct Window {
    started: Instant,
    failures: u32,
}

pub struct AuthGuard {
    windows: Mutex<HashMap<(IpAddr, String), Window>>,
    /// When the last refusal any key has earned ends, in nanoseconds after `epoch`: until then
    /// requests must be checked; after it, none can be refused and the map need not be read.
    refusing_until: AtomicU64,
    epoch: Instant,
}

impl Default for AuthGuard {
    fn default() -> Self {
        AuthGuard {
            windows: Mutex::default(),
            refusing_until: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }
}

impl AuthGuard {
    /// Whether any key may be refused now. False almost always, so the request path asks this
    /// (one atomic load) before working out the claimed org and calling [`AuthGuard::check`].
    pub fn refusing(&self) -> bool {
        self.nanos(Instant::now()) < self.refusing_until.load(Ordering::Relaxed)
    }

    fn nanos(&self, at: Instant) -> u64 {
        u64::try_from(at.duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    /// `Err(retry_after)` while `(peer, org)` is refused.
    pub fn check(&self, peer: IpAddr, org: &str) -> Result<(), Duration> {
        let windows = self.windows.lock().expect("auth guard lock");
        match windows.get(&(peer, org.to_owned())) {
            Some(w) if w.failures >= MAX_FAILURES && w.started.elapsed() < WINDOW => {
                Err(WINDOW - w.started.elapsed())
            }
            _ => Ok(()),
        }
    }

    /// Counts a failed authentication.
    pub fn failed(&self, peer: IpAddr, org: &str) {
        let mut windows = self.windows.lock().expect("auth guard lock");
        let now = Instant::now();
        if windows.len() >= MAX_KEYS {
            windows.retain(|_, w| now.duration_since(w.started) < WINDOW);
            if windows.len() >= MAX_KEYS {
                windows.clear();
            }
        }
        let window = windows.entry((peer, org.to_owned())).or_insert(Window {
            started: now,
            failures: 0,
        });
        if now.duration_since(window.started) >= WINDOW {
            *window = Window {
                started: now,
                failures: 0,
            };
        }
        window.failures += 1;
        if window.failures >= MAX_FAILURES {
            let until = self.nanos(window.started + WINDOW);
            self.refusing_until.fetch_max(until, Ordering::Relaxed);
        }
    }
}

/// The org a request claims (the Basic user), for the guard's key; `""` for Bearer or garbage.
pub fn claimed_org(authorization: Option<&[u8]>) -> String {
    use base64::Engine;
    let Some(value) = authorization else {
        return String::new();
    };
    let Some(token) = value
        .strip_prefix(b"Basic ")
        .or_else(|| value.strip_prefix(b"basic "))
    else {
        return String::new();
    };
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(token.trim_ascii()) else {
        return String::new();
    };
    let user = decoded.split(|&b| b == b':').next().unwrap_or_default();
    // Bounded, lower-cased, and only the characters an org ID can have.
    String::from_utf8_lossy(user)
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        .take(64)
        .collect::<String>()
        .to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[tokio::test(start_paused = true)]
    async fn locks_one_org_from_one_peer_for_the_window() {
        let guard = AuthGuard::default();
        for _ in 0..MAX_FAILURES {
            assert!(guard.check(PEER, "org-a").is_ok());
            guard.failed(PEER, "org-a");
        }
        let retry = guard.check(PEER, "org-a").unwrap_err();
        assert!(retry <= WINDOW);
        // Another org from the same (shared egress) address is not affected.
        assert!(guard.check(PEER, "org-b").is_ok());
        tokio::time::advance(WINDOW).await;
        assert!(guard.check(PEER, "org-a").is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn refusing_only_while_some_key_is_refused() {
        let guard = AuthGuard::default();
        assert!(!guard.refusing());
        for _ in 0..MAX_FAILURES - 1 {
            guard.failed(PEER, "org-a");
        }
        assert!(!guard.refusing(), "nine failures refuse nothing");
        guard.failed(PEER, "org-a");
        assert!(guard.refusing());
        tokio::time::advance(WINDOW - Duration::from_millis(1)).await;
        assert!(guard.refusing());
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(!guard.refusing());
        assert!(guard.check(PEER, "org-a").is_ok());
    }

    #[test]
    fn memory_is_bounded() {
        let guard = AuthGuard::default();
        for i in 0..(MAX_KEYS + 10) {
            guard.failed(PEER, &format!("org-{i}"));
        }
        assert!(guard.windows.lock().unwrap().len() <= MAX_KEYS);
    }

    #[test]
    fn claimed_orgs() {
        use base64::Engine;
        let basic = |s: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(s)
            )
        };
        assert_eq!(claimed_org(Some(basic("Org-A:x").as_bytes())), "org-a");
        assert_eq!(claimed_org(Some(b"Bearer abc")), "");
        assert_eq!(claimed_org(Some(b"Basic !!!")), "");
        assert_eq!(claimed_org(None), "");
        assert_eq!(
            claimed_org(Some(basic(&"a".repeat(500)).as_bytes())).len(),
            64
        );
    }
}
