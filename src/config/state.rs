//! `[state]`: the state directory, where casfront keeps what must outlive
//! the process — the route-cookie key it generates at first start
//! (`route.key`, mode 0600) for every pool whose `[pool.route_cookie]`
//! names no `key_file`, and the TLS ticket keys (`tls-tickets/`, made and
//! rotated by `crate::tls`). The directory is `[state] directory`, else
//! systemd's `$STATE_DIRECTORY` (`StateDirectory=`), else
//! `/var/lib/casfront` if it exists, else the configuration file's
//! directory. Parsing reads a key that exists; only a process about to
//! serve creates one ([`Config::prepare_state`]), never `casfront check`.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use toml::Spanned;

use super::diag::Diags;
use super::raw::RawState;
use super::Config;
use crate::routing::route_cookie::KEY_LEN;

/// The generated route-cookie key's file name in the state directory.
pub const KEY_FILE: &str = "route.key";
/// The state directory's folder of TLS ticket keys (`crate::tls`).
pub const TICKETS_DIR: &str = "tls-tickets";
/// Where the state lives when nothing else says.
pub const DEFAULT_DIRECTORY: &str = "/var/lib/casfront";

/// The state directory and what chose it.
#[derive(Clone, Debug, PartialEq)]
pub struct StateDir {
    pub directory: PathBuf,
    pub from: StateFrom,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum StateFrom {
    /// `[state] directory`.
    Config,
    /// `$STATE_DIRECTORY` (systemd's `StateDirectory=`).
    Systemd,
    /// `/var/lib/casfront`, which exists.
    Default,
    /// The configuration file's directory.
    BesideConfig,
}

impl std::fmt::Display for StateFrom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StateFrom::Config => "[state] directory",
            StateFrom::Systemd => "$STATE_DIRECTORY",
            StateFrom::Default => "the default",
            StateFrom::BesideConfig => "beside the configuration file",
        })
    }
}

impl StateDir {
    /// The generated route-cookie key's path.
    pub fn route_key(&self) -> PathBuf {
        self.directory.join(KEY_FILE)
    }

    /// The folder of TLS session ticket keys.
    pub fn ticket_keys(&self) -> PathBuf {
        self.directory.join(TICKETS_DIR)
    }
}

/// `[state]`, with the fallbacks the module header lists.
pub(super) fn state(
    raw: Option<Spanned<RawState>>,
    base: &Path,
    d: &mut Diags,
) -> Option<StateDir> {
    if let Some(dir) = raw.and_then(|r| r.into_inner().directory) {
        if dir.get_ref().is_empty() {
            d.error(dir.span(), "state directory must not be empty");
            return None;
        }
        let dir = base.join(dir.get_ref());
        return Some(StateDir {
            directory: std::path::absolute(&dir).unwrap_or(dir),
            from: StateFrom::Config,
        });
    }
    // systemd separates several directories with ':'; the first is ours.
    let systemd = std::env::var_os("STATE_DIRECTORY")
        .and_then(|v| {
            v.to_str()
                .and_then(|s| s.split(':').next())
                .map(PathBuf::from)
        })
        .filter(|p| p.is_absolute());
    Some(match systemd {
        Some(directory) => StateDir {
            directory,
            from: StateFrom::Systemd,
        },
        None if Path::new(DEFAULT_DIRECTORY).is_dir() => StateDir {
            directory: DEFAULT_DIRECTORY.into(),
            from: StateFrom::Default,
        },
        None => StateDir {
            directory: std::path::absolute(base).unwrap_or_else(|_| base.to_owned()),
            from: StateFrom::BesideConfig,
        },
    })
}

/// A key file: 32 bytes as 64 hex characters.
pub(crate) fn read_key(path: &Path) -> Result<[u8; KEY_LEN], String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let hex = text.trim();
    let bytes: Option<Vec<u8>> = (hex.len() == 2 * KEY_LEN)
        .then(|| {
            (0..KEY_LEN)
                .map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok())
                .collect()
        })
        .flatten();
    bytes
        .and_then(|b| <[u8; KEY_LEN]>::try_from(b).ok())
        .ok_or_else(|| {
            format!(
                "{} must hold 32 random bytes as 64 hex characters (openssl rand -hex 32)",
                path.display()
            )
        })
}

/// Whether the state key is kept on disk or only for this process.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Keep {
    /// Created in the state directory if missing (a serving process).
    OnDisk,
    /// Drawn at random, in memory only (the demo, tests in one process).
    InMemory,
}

impl Config {
    /// Whether some pool's route cookie uses the state directory's key.
    pub fn uses_state_key(&self) -> bool {
        (self.pools.iter()).any(|p| p.route_cookie.as_ref().is_some_and(|r| r.generated))
    }

    /// Gives the pools that use the state directory's key that key,
    /// creating it first if `keep` says so and it does not exist yet.
    /// Returns the path of a key just created.
    pub fn prepare_state(&mut self, keep: Keep) -> Result<Option<PathBuf>, String> {
        let missing = (self.pools.iter())
            .filter_map(|p| p.route_cookie.as_ref())
            .any(|r| r.generated && r.keys.is_empty());
        if !missing {
            return Ok(None);
        }
        let (key, created) = match keep {
            Keep::InMemory => (random_key()?, None),
            Keep::OnDisk => {
                let path = self.state.route_key();
                let created = create_key(&path).map_err(|e| {
                    format!(
                        "cannot create the route-cookie key {} ({e}); the state directory is {} \
                         ({}): make it writable, set [state] directory, or give each pool's \
                         [pool.route_cookie] a key_file",
                        path.display(),
                        self.state.directory.display(),
                        self.state.from
                    )
                })?;
                (read_key(&path)?, created.then_some(path))
            }
        };
        for rc in self
            .pools
            .iter_mut()
            .filter_map(|p| p.route_cookie.as_mut())
        {
            if rc.generated && rc.keys.is_empty() {
                rc.keys.push(key);
            }
        }
        Ok(created)
    }
}

/// 32 random bytes: a new key.
pub(crate) fn random_key() -> Result<[u8; KEY_LEN], String> {
    let mut key = [0u8; KEY_LEN];
    SystemRandom::new()
        .fill(&mut key)
        .map_err(|_| "no randomness for a new key".to_owned())?;
    Ok(key)
}

/// Writes a new random key to `path` unless one is there (another process
/// may be creating it at the same moment: the first link wins, mode 0600
/// from the start). True if this call created it.
pub(crate) fn create_key(path: &Path) -> std::io::Result<bool> {
    if path.exists() {
        return Ok(false);
    }
    let key = random_key().map_err(std::io::Error::other)?;
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    let dir = super::dir_of(path);
    std::fs::create_dir_all(dir)?;
    // A name of its own each time: a crash between the open and the link
    // must not leave a file that blocks every later start (in a container
    // the process id is always 1).
    let tmp = dir.join(format!(".{KEY_FILE}.{:016x}", rand::random::<u64>()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    let written = file
        .write_all(format!("{hex}\n").as_bytes())
        .and_then(|()| file.sync_all())
        .and_then(|()| std::fs::hard_link(&tmp, path));
    let _ = std::fs::remove_file(&tmp);
    // The link itself must survive a crash: sync the directory.
    if written.is_ok() {
        std::fs::File::open(dir).and_then(|d| d.sync_all())?;
    }
    match written {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("casfront-state-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn a_key_is_created_once_with_mode_0600_and_read_back() {
        let d = dir("create");
        let path = d.join(KEY_FILE);
        assert!(create_key(&path).unwrap());
        let first = read_key(&path).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // A second start keeps it.
        assert!(!create_key(&path).unwrap());
        assert_eq!(read_key(&path).unwrap(), first);
        assert_ne!(first, [0; KEY_LEN]);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_bad_key_file_is_named() {
        let d = dir("bad");
        std::fs::create_dir_all(&d).unwrap();
        let path = d.join(KEY_FILE);
        std::fs::write(&path, "abcd\n").unwrap();
        let e = read_key(&path).unwrap_err();
        assert!(e.contains("64 hex characters"), "{e}");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_bare_file_name_is_in_the_current_directory() {
        // `casfront run -c casfront.toml`: the key goes beside it, in `.`
        // (the empty parent could be neither opened nor synced).
        assert_eq!(
            super::super::dir_of(Path::new("casfront.toml")),
            Path::new(".")
        );
        assert_eq!(
            super::super::dir_of(Path::new("/etc/casfront/casfront.toml")),
            Path::new("/etc/casfront")
        );
    }
}
