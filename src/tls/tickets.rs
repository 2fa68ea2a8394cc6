//! TLS session tickets whose keys outlive the process, so that a client
//! resumes its session across a reload, a restart and a `SIGUSR2`
//! upgrade. Time is cut into periods of [`PERIOD`]; each period has its
//! own random key, kept in the state directory (`tls-tickets/<period>.key`,
//! mode 0600, made by whichever process first needs it: the first link
//! wins, as for `route.key`). A ticket is sealed (ChaCha20-Poly1305) under
//! the key of the period it was issued in, whose number leads it in
//! clear, and opens during that period and the next. Keys of older
//! periods are deleted, so a copy of the disk opens no ticket older than
//! two periods, as rustls' own rotating ticketer keeps two keys in memory.
//! Without a writable state directory the keys live in memory only.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use rustls::server::ProducesTickets;

use crate::config::state::{create_key, random_key, read_key};
use crate::routing::route_cookie::KEY_LEN;

/// How long one key seals new tickets (rustls' own ticketer rotates as
/// often).
pub const PERIOD: Duration = Duration::from_secs(6 * 3600);
const HEADER: usize = 4;
const TAG_LEN: usize = 16;

/// Where the keys are kept.
#[derive(Clone, Debug)]
pub enum Store {
    /// One file per period in this folder.
    Directory(PathBuf),
    /// This process's memory.
    Memory,
}

/// The ticket keys in use: the period's and, if known, the one before.
struct Keys {
    period: u64,
    current: Key,
    previous: Option<Key>,
}

struct Key {
    bytes: [u8; KEY_LEN],
    aead: LessSafeKey,
}

impl Key {
    fn new(bytes: [u8; KEY_LEN]) -> Result<Key, String> {
        let aead = UnboundKey::new(&CHACHA20_POLY1305, &bytes)
            .map(LessSafeKey::new)
            .map_err(|_| "a ticket key of the wrong length".to_owned())?;
        Ok(Key { bytes, aead })
    }
}

/// casfront's ticketer ([`ProducesTickets`]).
pub struct Tickets {
    store: Store,
    keys: ArcSwap<Keys>,
    /// One rotation at a time.
    rotating: Mutex<()>,
    rng: SystemRandom,
}

impl std::fmt::Debug for Tickets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tickets")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

fn period_at(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() / PERIOD.as_secs()
}

impl Tickets {
    /// Keys from `store`. A folder that cannot be used is said why (the
    /// second value), and the keys then live in memory.
    pub fn new(store: Store) -> Result<(Tickets, Option<String>), String> {
        Tickets::at(store, SystemTime::now())
    }

    fn at(store: Store, now: SystemTime) -> Result<(Tickets, Option<String>), String> {
        let period = period_at(now);
        let (store, keys, why) = match keys_in(&store, period, None) {
            Ok(keys) => (store, keys, None),
            Err(why) => (
                Store::Memory,
                keys_in(&Store::Memory, period, None)?,
                Some(why),
            ),
        };
        let tickets = Tickets {
            store,
            keys: ArcSwap::from_pointee(keys),
            rotating: Mutex::new(()),
            rng: SystemRandom::new(),
        };
        Ok((tickets, why))
    }

    /// Where the keys are.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The keys for the period of `now`, rotated to it if it has begun
    /// (never back, should the clock step back).
    fn keys_at(&self, now: SystemTime) -> Option<arc_swap::Guard<Arc<Keys>>> {
        let period = period_at(now);
        let keys = self.keys.load();
        if period <= keys.period {
            return Some(keys);
        }
        drop(keys);
        let _one = self.rotating.lock().ok()?;
        let old = self.keys.load_full();
        if period > old.period {
            let new = keys_in(&self.store, period, Some(&old)).ok()?;
            self.keys.store(Arc::new(new));
        }
        Some(self.keys.load())
    }

    fn seal_at(&self, plain: &[u8], now: SystemTime) -> Option<Vec<u8>> {
        let keys = self.keys_at(now)?;
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).ok()?;
        let header = u32::try_from(keys.period).ok()?.to_be_bytes();
        let mut out = Vec::with_capacity(HEADER + NONCE_LEN + plain.len() + TAG_LEN);
        out.extend_from_slice(&header);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plain);
        let tag = keys
            .current
            .aead
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(header),
                &mut out[HEADER + NONCE_LEN..],
            )
            .ok()?;
        out.extend_from_slice(tag.as_ref());
        Some(out)
    }

    fn open_at(&self, ticket: &[u8], now: SystemTime) -> Option<Vec<u8>> {
        let keys = self.keys_at(now)?;
        let header: [u8; HEADER] = ticket.get(..HEADER)?.try_into().ok()?;
        let nonce: [u8; NONCE_LEN] = ticket.get(HEADER..HEADER + NONCE_LEN)?.try_into().ok()?;
        let period = u64::from(u32::from_be_bytes(header));
        let key = if period == keys.period {
            &keys.current
        } else if period + 1 == keys.period {
            keys.previous.as_ref()?
        } else {
            return None;
        };
        let mut body = ticket.get(HEADER + NONCE_LEN..)?.to_vec();
        let plain = key
            .aead
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(header),
                &mut body,
            )
            .ok()?;
        let n = plain.len();
        body.truncate(n);
        Some(body)
    }
}

impl ProducesTickets for Tickets {
    fn enabled(&self) -> bool {
        true
    }

    /// A ticket issued at the end of its period still opens for a whole
    /// period after.
    fn lifetime(&self) -> u32 {
        u32::try_from(PERIOD.as_secs()).unwrap_or(u32::MAX)
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        self.seal_at(plain, SystemTime::now())
    }

    fn decrypt(&self, ticket: &[u8]) -> Option<Vec<u8>> {
        self.open_at(ticket, SystemTime::now())
    }
}

/// The keys of `period` from `store`: its key (made if missing) and the
/// one before it (from the store, else from `old`, else none). Deletes
/// the files of older periods.
fn keys_in(store: &Store, period: u64, old: Option<&Keys>) -> Result<Keys, String> {
    let from_old = |p: u64| -> Option<[u8; KEY_LEN]> {
        let old = old?;
        if old.period == p {
            return Some(old.current.bytes);
        }
        (old.period == p + 1).then(|| old.previous.as_ref().map(|k| k.bytes))?
    };
    let (current, previous) = match store {
        Store::Memory => {
            let current = match from_old(period) {
                Some(k) => k,
                None => random_key()?,
            };
            (current, period.checked_sub(1).and_then(from_old))
        }
        Store::Directory(dir) => {
            let path = |p: u64| dir.join(format!("{p}.key"));
            create_key(&path(period))
                .map_err(|e| format!("cannot create {}: {e}", path(period).display()))?;
            let current = read_key(&path(period))?;
            let previous = period
                .checked_sub(1)
                .and_then(|p| read_key(&path(p)).ok().or_else(|| from_old(p)));
            remove_before(dir, period.saturating_sub(1));
            (current, previous)
        }
    };
    Ok(Keys {
        period,
        current: Key::new(current)?,
        previous: previous.map(Key::new).transpose()?,
    })
}

/// Deletes the key files of periods before `keep`.
fn remove_before(dir: &Path, keep: u64) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let stale = (name.to_str())
            .and_then(|n| n.strip_suffix(".key"))
            .and_then(|p| p.parse::<u64>().ok())
            .is_some_and(|p| p < keep);
        if stale {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("casfront-tickets-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    /// The start of period `p` plus `secs`.
    fn at(p: u64, secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(p * PERIOD.as_secs() + secs)
    }

    const P: u64 = 90_000;

    #[test]
    fn a_ticket_opens_in_its_period_and_the_next_only() {
        let (t, why) = Tickets::at(Store::Memory, at(P, 10)).unwrap();
        assert!(why.is_none());
        let ticket = t.seal_at(b"session", at(P, 20)).unwrap();
        assert_eq!(t.open_at(&ticket, at(P, 30)).unwrap(), b"session");
        // The next period: sealed with a new key, this one still opens.
        let next = t.seal_at(b"later", at(P + 1, 5)).unwrap();
        assert_ne!(next[..HEADER], ticket[..HEADER]);
        assert_eq!(t.open_at(&ticket, at(P + 1, 10)).unwrap(), b"session");
        assert_eq!(t.open_at(&next, at(P + 1, 10)).unwrap(), b"later");
        // Two periods on, it does not.
        assert!(t.open_at(&ticket, at(P + 2, 0)).is_none());
        assert_eq!(t.open_at(&next, at(P + 2, 0)).unwrap(), b"later");
        // Nor does anything changed, cut or of another process.
        let mut bad = next.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert!(t.open_at(&bad, at(P + 2, 0)).is_none());
        assert!(t.open_at(&next[..10], at(P + 2, 0)).is_none());
        let (other, _) = Tickets::at(Store::Memory, at(P + 2, 0)).unwrap();
        let theirs = other.seal_at(b"x", at(P + 2, 0)).unwrap();
        assert!(t.open_at(&theirs, at(P + 2, 1)).is_none());
    }

    #[test]
    fn a_process_after_this_one_opens_its_tickets_from_the_state_directory() {
        let d = dir("restart");
        let (old, why) = Tickets::at(Store::Directory(d.clone()), at(P, 0)).unwrap();
        assert!(why.is_none(), "{why:?}");
        let ticket = old.seal_at(b"session", at(P, 100)).unwrap();
        let mode = |p: u64| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(d.join(format!("{p}.key")))
                .unwrap()
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode(P), 0o600);
        // A restart (or the new process of an upgrade) in the same
        // period, and one in the next.
        let (new, _) = Tickets::at(Store::Directory(d.clone()), at(P, 200)).unwrap();
        assert_eq!(new.open_at(&ticket, at(P, 300)).unwrap(), b"session");
        let (later, _) = Tickets::at(Store::Directory(d.clone()), at(P + 1, 0)).unwrap();
        assert_eq!(later.open_at(&ticket, at(P + 1, 1)).unwrap(), b"session");
        // Rotating on: the key of P is deleted once P + 2 begins.
        assert!(later.seal_at(b"x", at(P + 2, 0)).is_some());
        assert!(!d.join(format!("{P}.key")).exists());
        assert!(d.join(format!("{}.key", P + 1)).exists());
        assert!(later.open_at(&ticket, at(P + 2, 1)).is_none());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_directory_that_cannot_be_written_leaves_the_keys_in_memory() {
        let d = dir("blocked");
        std::fs::write(&d, "a file where the folder should be").unwrap();
        let (t, why) = Tickets::at(Store::Directory(d.clone()), at(P, 0)).unwrap();
        assert!(matches!(t.store(), Store::Memory));
        assert!(why.unwrap().contains("cannot create"));
        let ticket = t.seal_at(b"s", at(P, 1)).unwrap();
        assert_eq!(t.open_at(&ticket, at(P, 2)).unwrap(), b"s");
        let _ = std::fs::remove_file(&d);
    }
}
