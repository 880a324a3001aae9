//! Signing outbound calls after Standard Webhooks (standardwebhooks.com).
//!
//! Each call carries `webhook-signature: v1,<sig> [v1,<sig>]`, one entry per active key of the
//! task's user, where `<sig>` is the base64 HMAC-SHA256 under the key of
//! `"<webhook-id>.<webhook-timestamp>.<body>"`. A receiver that knows either key accepts the
//! call, so a key is rotated without downtime: create the new one, move the receiver over,
//! revoke the old one.
//!
//! The [`KeyRing`] holds every user's active keys in memory, ready to sign (the HMAC key
//! schedule is done once per key, not per call). The API updates it when a key is created or
//! revoked on this node; in a cluster, [`KeyRing::follow`] notices changes made through other
//! nodes.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

/// What every secret starts with, as Standard Webhooks libraries expect.
pub const SECRET_PREFIX: &str = "whsec_";
/// Bytes of randomness in a secret.
pub const SECRET_LEN: usize = 32;
/// Active keys per user: two, so a receiver can be moved from one to the other.
pub const MAX_KEYS_PER_USER: usize = 2;
/// Rounds of [`KeyRing::follow`] between reloads made whatever the fingerprint says.
pub const FULL_RELOAD_EVERY: u32 = 60;
/// Characters of the base64 part a key list shows.
const SHOWN: usize = 4;

type HmacSha256 = Hmac<Sha256>;

/// One active key, ready to sign.
#[derive(Clone)]
struct SigningKey {
    key_id: String,
    mac: HmacSha256,
}

/// A new key's secret: the raw bytes (for sealing) and its `whsec_…` form (shown once).
pub struct NewSecret {
    pub bytes: Zeroizing<[u8; SECRET_LEN]>,
    pub text: Zeroizing<String>,
}

impl NewSecret {
    /// 32 random bytes from the operating system's generator.
    pub fn generate() -> Self {
        let mut bytes = Zeroizing::new([0u8; SECRET_LEN]);
        rand::fill(&mut bytes[..]);
        let text = Zeroizing::new(format!("{SECRET_PREFIX}{}", STANDARD.encode(&bytes[..])));
        Self { bytes, text }
    }

    /// What a key list shows of it: `whsec_` and the first characters, never enough to sign.
    pub fn prefix(&self) -> String {
        self.text[..SECRET_PREFIX.len() + SHOWN].to_string()
    }
}

/// Every user's active keys, shared by the HTTP workers (which sign) and the API (which
/// changes them).
#[derive(Default)]
pub struct KeyRing {
    users: RwLock<HashMap<i64, Arc<[SigningKey]>>>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing")
            .field("users", &self.read().len())
            .finish()
    }
}

/// A key as storage gives it back: its id, its user and its 32 secret bytes.
pub struct StoredKey {
    pub key_id: String,
    pub user_id: i64,
    pub secret: Zeroizing<Vec<u8>>,
}

impl KeyRing {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<i64, Arc<[SigningKey]>>> {
        self.users
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Replaces every user's keys with `keys` (start-up, and a change seen in storage).
    pub fn replace_all(&self, keys: Vec<StoredKey>) {
        let mut by_user: HashMap<i64, Vec<SigningKey>> = HashMap::new();
        for k in keys {
            if let Some(key) = signing_key(&k) {
                by_user.entry(k.user_id).or_default().push(key);
            }
        }
        let users = by_user
            .into_iter()
            .map(|(user, mut keys)| {
                keys.sort_by(|a, b| a.key_id.cmp(&b.key_id));
                (user, Arc::from(keys))
            })
            .collect();
        *self
            .users
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = users;
    }

    /// Replaces one user's keys with `keys` (after a create or revoke through this node).
    pub fn set_user(&self, user_id: i64, keys: Vec<StoredKey>) {
        let mut keys: Vec<SigningKey> = keys.iter().filter_map(signing_key).collect();
        keys.sort_by(|a, b| a.key_id.cmp(&b.key_id));
        let mut users = self
            .users
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if keys.is_empty() {
            users.remove(&user_id);
        } else {
            users.insert(user_id, Arc::from(keys));
        }
    }

    /// How many keys sign `user_id`'s calls.
    pub fn count(&self, user_id: i64) -> usize {
        self.read().get(&user_id).map_or(0, |k| k.len())
    }

    /// The `webhook-signature` value for one call of `user_id`'s, or `None` when the user has
    /// no key (the call goes unsigned). `body` is exactly the bytes sent (empty for none).
    pub fn sign(&self, user_id: i64, id: &str, timestamp: i64, body: &[u8]) -> Option<String> {
        // The lock is held only to clone the Arc: signing happens outside it.
        let keys = self.read().get(&user_id).cloned()?;
        Some(signature(&keys, id, timestamp, body))
    }

    /// Cluster mode: every `every`, asks `fingerprint` whether the stored keys changed (keys
    /// created or revoked through another node) and, when they did, reloads them all with
    /// `load`; every [`FULL_RELOAD_EVERY`] rounds it reloads them anyway. A failed read is
    /// logged and tried again on the next round.
    pub fn follow<F, L, FFut, LFut, E>(self: &Arc<Self>, every: Duration, fingerprint: F, load: L)
    where
        F: Fn() -> FFut + 'static,
        L: Fn() -> LFut + 'static,
        FFut: std::future::Future<Output = Result<(i64, i64, i64), E>>,
        LFut: std::future::Future<Output = Result<Vec<StoredKey>, E>>,
        E: std::fmt::Display,
    {
        let ring = Arc::downgrade(self);
        actix_rt::spawn(async move {
            let mut seen = None;
            let mut rounds = 0u32;
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(ring) = ring.upgrade() else { return };
                let now = match fingerprint().await {
                    Ok(f) => f,
                    Err(e) => {
                        tracing::warn!(error = %e, "signing keys: checking for changes failed");
                        continue;
                    }
                };
                rounds += 1;
                if seen == Some(now) && rounds % FULL_RELOAD_EVERY != 0 {
                    continue;
                }
                match load().await {
                    Ok(keys) => {
                        ring.replace_all(keys);
                        seen = Some(now);
                    }
                    Err(e) => tracing::warn!(error = %e, "signing keys: reloading failed"),
                }
            }
        });
    }
}

fn signing_key(k: &StoredKey) -> Option<SigningKey> {
    match HmacSha256::new_from_slice(&k.secret) {
        Ok(mac) => Some(SigningKey {
            key_id: k.key_id.clone(),
            mac,
        }),
        Err(_) => None,
    }
}

/// `v1,<sig>` for each key, space-separated.
fn signature(keys: &[SigningKey], id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut out = String::with_capacity(keys.len() * 48);
    let ts = timestamp.to_string();
    for (i, key) in keys.iter().enumerate() {
        let mut mac = key.mac.clone();
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(ts.as_bytes());
        mac.update(b".");
        mac.update(body);
        if i > 0 {
            out.push(' ');
        }
        out.push_str("v1,");
        STANDARD.encode_string(mac.finalize().into_bytes(), &mut out);
    }
    out
}

/// The 32 bytes of a `whsec_…` secret, as a receiver decodes it.
pub fn decode_secret(text: &str) -> Option<Vec<u8>> {
    let raw = text.strip_prefix(SECRET_PREFIX)?;
    STANDARD.decode(raw).ok().filter(|b| b.len() == SECRET_LEN)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(key_id: &str, user_id: i64, secret: &NewSecret) -> StoredKey {
        StoredKey {
            key_id: key_id.into(),
            user_id,
            secret: Zeroizing::new(secret.bytes.to_vec()),
        }
    }

    #[test]
    fn a_secret_is_whsec_and_32_bytes_of_base64_and_its_prefix_is_short() {
        let s = NewSecret::generate();
        assert!(s.text.starts_with("whsec_"));
        assert_eq!(decode_secret(&s.text).as_deref(), Some(&s.bytes[..]));
        assert_eq!(s.prefix().len(), "whsec_".len() + 4);
        assert!(s.text.starts_with(&s.prefix()));
        assert_ne!(NewSecret::generate().text, s.text);
    }

    #[test]
    fn each_active_key_adds_one_entry_and_a_user_without_keys_signs_nothing() {
        let ring = KeyRing::new();
        let (a, b) = (NewSecret::generate(), NewSecret::generate());
        assert_eq!(ring.sign(7, "id", 1, b"{}"), None);
        ring.set_user(7, vec![stored("a", 7, &a)]);
        let one = ring.sign(7, "id", 1, b"{}").expect("signed");
        assert!(one.starts_with("v1,") && !one.contains(' '));
        ring.set_user(7, vec![stored("a", 7, &a), stored("b", 7, &b)]);
        let two = ring.sign(7, "id", 1, b"{}").expect("signed");
        assert_eq!(two.split(' ').count(), 2);
        assert!(two.split(' ').any(|s| s == one));
        assert_eq!(ring.sign(8, "id", 1, b"{}"), None, "another user's keys");
        ring.set_user(7, vec![]);
        assert_eq!(ring.count(7), 0);
        assert_eq!(ring.sign(7, "id", 1, b"{}"), None);
    }

    #[test]
    fn the_signature_covers_the_id_the_timestamp_and_every_body_byte() {
        let ring = KeyRing::new();
        let a = NewSecret::generate();
        ring.replace_all(vec![stored("a", 1, &a)]);
        let base = ring.sign(1, "id", 10, b"body");
        assert_ne!(base, ring.sign(1, "id2", 10, b"body"));
        assert_ne!(base, ring.sign(1, "id", 11, b"body"));
        assert_ne!(base, ring.sign(1, "id", 10, b"bodY"));
        assert_eq!(base, ring.sign(1, "id", 10, b"body"));
    }

    /// `follow` reloads when the fingerprint moves, and only then (until a full reload is due).
    #[actix_rt::test]
    async fn follow_reloads_the_ring_when_the_fingerprint_changes() {
        use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
        let ring = KeyRing::new();
        let version = Arc::new(AtomicI64::new(0));
        let loads = Arc::new(AtomicUsize::new(0));
        let secret = Arc::new(NewSecret::generate());
        let (v, l, sec) = (version.clone(), loads.clone(), secret.clone());
        ring.follow(
            Duration::from_millis(5),
            move || {
                let v = v.load(Ordering::SeqCst);
                async move { Ok::<_, String>((v, 0, 0)) }
            },
            move || {
                let n = l.fetch_add(1, Ordering::SeqCst);
                let keys = if n == 0 {
                    vec![]
                } else {
                    vec![StoredKey {
                        key_id: "k".into(),
                        user_id: 3,
                        secret: Zeroizing::new(sec.bytes.to_vec()),
                    }]
                };
                async move { Ok::<_, String>(keys) }
            },
        );
        let wait = |what: &'static str, f: Box<dyn Fn() -> bool>| async move {
            let start = std::time::Instant::now();
            while !f() {
                assert!(start.elapsed() < Duration::from_secs(10), "{what}");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        let l = loads.clone();
        wait(
            "the first load",
            Box::new(move || l.load(Ordering::SeqCst) == 1),
        )
        .await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(loads.load(Ordering::SeqCst), 1, "reloaded without a change");
        assert_eq!(ring.count(3), 0);
        version.store(1, Ordering::SeqCst);
        let r = ring.clone();
        wait(
            "the key after the change",
            Box::new(move || r.count(3) == 1),
        )
        .await;
    }
}
