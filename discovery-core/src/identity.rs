//! The process's libp2p identity: one ed25519 key file, created on first start,
//! shared by every part that speaks libp2p or signs (the mdns libp2p flavour,
//! the dht host, signed announcements).
//!
//! The file holds the key in libp2p's protobuf encoding (the format go-libp2p
//! and kubo keep), readable only by its owner. Loading the same path twice in
//! one process returns the same key, so two sources never disagree on the
//! peer id.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

pub use libp2p_identity::{Keypair, PeerId, PublicKey};

/// A key file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// The file exists but cannot be read.
    #[error(
        "identity file {path}: cannot read: {source} (set `[identity] file` to a readable path)"
    )]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file could not be created.
    #[error(
        "identity file {path}: cannot create: {source} (set `[identity] file` to a writable path)"
    )]
    Create {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file does not hold a libp2p key.
    #[error("identity file {path}: not a libp2p protobuf-encoded key: {reason} (delete it to create a new identity)")]
    Decode {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// The local libp2p identity.
#[derive(Clone)]
pub struct Identity {
    keypair: Keypair,
    peer_id: PeerId,
    path: PathBuf,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        f.debug_struct("Identity")
            .field("peer_id", &self.peer_id)
            .field("path", &self.path)
            .finish()
    }
}

impl Identity {
    /// An identity from a key (tests, embedders that manage keys themselves).
    pub fn from_keypair(keypair: Keypair) -> Self {
        let peer_id = keypair.public().to_peer_id();
        Identity {
            keypair,
            peer_id,
            path: PathBuf::new(),
        }
    }

    /// A fresh random ed25519 identity that is never written anywhere.
    pub fn ephemeral() -> Self {
        Self::from_keypair(Keypair::generate_ed25519())
    }

    /// The key pair.
    pub fn keypair(&self) -> &Keypair {
        &self.keypair
    }

    /// The peer id derived from the public key.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// The file the key came from (empty for ephemeral keys).
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn loaded() -> &'static Mutex<HashMap<PathBuf, Arc<Identity>>> {
    static LOADED: OnceLock<Mutex<HashMap<PathBuf, Arc<Identity>>>> = OnceLock::new();
    LOADED.get_or_init(Default::default)
}

/// Reads the key at `path`, or creates a new ed25519 key there (mode 0600) when
/// the file does not exist. The same path always yields the same identity
/// within one process; two processes racing to create it agree on one key.
pub fn load_or_create(path: &Path) -> Result<Arc<Identity>, IdentityError> {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut cache = loaded().lock().unwrap_or_else(|p| p.into_inner());
    if let Some(id) = cache.get(&absolute) {
        return Ok(id.clone());
    }
    let (identity, created) = read_or_create(&absolute)?;
    if created {
        tracing::info!(peer_id = %identity.peer_id, file = %absolute.display(), "created a new libp2p identity");
    }
    let identity = Arc::new(identity);
    cache.insert(absolute, identity.clone());
    Ok(identity)
}

/// The identity at `path` and whether this call created it.
fn read_or_create(path: &Path) -> Result<(Identity, bool), IdentityError> {
    match std::fs::read(path) {
        Ok(bytes) => Ok((decode(path, &bytes)?, false)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => create(path),
        Err(source) => Err(IdentityError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn decode(path: &Path, bytes: &[u8]) -> Result<Identity, IdentityError> {
    let keypair = Keypair::from_protobuf_encoding(bytes).map_err(|e| IdentityError::Decode {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    Ok(Identity {
        peer_id: keypair.public().to_peer_id(),
        keypair,
        path: path.to_path_buf(),
    })
}

fn create(path: &Path) -> Result<(Identity, bool), IdentityError> {
    let create_err = |source| IdentityError::Create {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(create_err)?;
    }
    let keypair = Keypair::generate_ed25519();
    let bytes = keypair
        .to_protobuf_encoding()
        .map_err(|e| create_err(std::io::Error::other(e.to_string())))?;
    // Written to a private temp file, then linked into place: another process
    // starting at the same moment either wins (we read its key) or loses.
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(&tmp).map_err(create_err)?;
    f.write_all(&bytes)
        .and_then(|_| f.sync_all())
        .map_err(create_err)?;
    drop(f);
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok((
            Identity {
                peer_id: keypair.public().to_peer_id(),
                keypair,
                path: path.to_path_buf(),
            },
            true,
        )),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let bytes = std::fs::read(path).map_err(|source| IdentityError::Read {
                path: path.to_path_buf(),
                source,
            })?;
            Ok((decode(path, &bytes)?, false))
        }
        Err(e) => Err(create_err(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_then_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/identity.key");
        let (a, created) = read_or_create(&path).unwrap();
        let (b, again) = read_or_create(&path).unwrap();
        assert!(created && !again);
        assert_eq!(a.peer_id(), b.peer_id());
        assert!(
            a.peer_id().to_string().starts_with("12D3KooW"),
            "ed25519 peer id"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn same_path_same_identity_in_process() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("id.key");
        let a = load_or_create(&path).unwrap();
        let b = load_or_create(&dir.path().join("./id.key")).unwrap();
        assert_eq!(a.peer_id(), b.peer_id());
    }

    #[test]
    fn garbage_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("id.key");
        std::fs::write(&path, b"not a key").unwrap();
        let err = read_or_create(&path).unwrap_err().to_string();
        assert!(err.contains("not a libp2p protobuf-encoded key"), "{err}");
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let id = Identity::ephemeral();
        let shown = format!("{id:?}");
        assert!(shown.contains(&id.peer_id().to_string()));
        assert!(!shown.contains("Keypair"));
    }
}
