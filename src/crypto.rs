//! Secrets at rest: AES-256-GCM encryption of sensitive task columns (request headers).
//!
//! A stored value is `key_id (1 byte) || nonce (12 bytes) || ciphertext || tag (16 bytes)`.
//! The task id is passed as associated data, so a ciphertext copied into another row fails to
//! decrypt instead of leaking one task's secrets into another task's requests. The key lives in a
//! 32-byte file created with mode 0600 on the first start, and only then: a key made up while the
//! database holds values sealed by another one would leave every task with headers unrecoverable
//! while the service looked healthy, so start-up checks the key against what is stored and
//! refuses to run with a missing or different key.

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, Generate, KeyInit, Payload};
use aes_gcm::aes::cipher::BlockCipherEncrypt;
use aes_gcm::aes::Aes256;
use aes_gcm::Aes256Gcm;

/// Length of the AES-256 key, in bytes.
pub const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// Smallest possible blob: key id, nonce and the tag of an empty plaintext.
const MIN_BLOB_LEN: usize = 1 + NONCE_LEN + TAG_LEN;

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// Reading or creating the key file failed; the path is kept because "permission denied"
    /// alone does not tell an operator which file to fix.
    #[error("key file {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("bad key file: {0}")]
    BadKeyFile(String),
    /// The database holds encrypted values but the key file is gone. Creating a new key here
    /// would make all of them unreadable for good (once the new file exists, restoring the old
    /// one means overwriting it), so start-up stops instead.
    #[error(
        "key file {} does not exist, but the database holds values encrypted with a key \
         (task headers); a new key could not open them, so none was created. Restore the key \
         file from a backup to {}, or point crypto.key_file (TICKWHEEL__CRYPTO__KEY_FILE) at it",
        path.display(),
        path.display()
    )]
    KeyMissing { path: PathBuf },
    /// The key file opens none of the encrypted values sampled from the database: it is not the
    /// key they were written with (replaced, or another node's).
    #[error(
        "the key in {} does not open the values encrypted in the database (task headers): it \
         is not the key they were written with. Restore the original key file from a backup, \
         or point crypto.key_file (TICKWHEEL__CRYPTO__KEY_FILE) at it; the file was left as it is",
        path.display()
    )]
    WrongKey { path: PathBuf },
    #[error("encryption failed")]
    Encrypt,
    /// Deliberately one opaque error: wrong key, wrong row (associated data) and tampering are
    /// indistinguishable to an attacker, and to us beyond the key-id hint.
    #[error("decryption failed (wrong key, value moved from another row, or corrupted data)")]
    Decrypt,
}

/// An AES-256-GCM cipher holding the master key.
#[derive(Clone)]
pub struct Cipher {
    aead: Aes256Gcm,
    key_id: u8,
}

// Written by hand so that logging a `Cipher` (or a struct containing one) can never print the key.
impl fmt::Debug for Cipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cipher")
            .field("key_id", &format_args!("{:#04x}", self.key_id))
            .finish()
    }
}

/// A value the database already holds encrypted, with its associated data: what a key is
/// checked against before the service uses it.
#[derive(Debug, Clone)]
pub struct Sealed {
    pub aad: Vec<u8>,
    pub blob: Vec<u8>,
}

impl Cipher {
    /// Loads the 32-byte key from `path` for a database whose encrypted values include
    /// `existing` (a sample of them; empty when it holds none).
    ///
    /// - The file exists: its key must open at least one of `existing` (one is enough, so a
    ///   single damaged row does not stop the service), else [`CryptoError::WrongKey`]. A file
    ///   that group or others may read is used, with a warning.
    /// - It does not exist and `existing` is empty (a fresh install): a random key is created
    ///   with mode 0600 (parent directories too).
    /// - It does not exist and `existing` is not: [`CryptoError::KeyMissing`]; nothing is written.
    ///
    /// A file of the wrong length is an error and is never replaced: overwriting it would make
    /// every stored secret unreadable.
    pub fn load(path: &Path, existing: &[Sealed]) -> Result<Self, CryptoError> {
        let cipher = Self::load_or_create(path, existing.is_empty())?;
        let opens = |s: &Sealed| cipher.decrypt(&s.blob, &s.aad).is_ok();
        if !existing.is_empty() && !existing.iter().any(opens) {
            return Err(CryptoError::WrongKey {
                path: path.to_path_buf(),
            });
        }
        Ok(cipher)
    }

    /// Reads the key file, or creates it when `may_create`.
    fn load_or_create(path: &Path, may_create: bool) -> Result<Self, CryptoError> {
        let io_err = |source: io::Error| CryptoError::Io {
            path: path.to_path_buf(),
            source,
        };
        match fs::read(path) {
            Ok(bytes) => {
                warn_if_shared(path);
                Self::from_file_bytes(path, &bytes)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound && !may_create => {
                Err(CryptoError::KeyMissing {
                    path: path.to_path_buf(),
                })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                    fs::create_dir_all(parent).map_err(io_err)?;
                }
                let key = <[u8; KEY_LEN]>::try_generate()
                    .map_err(|e| io_err(io::Error::other(format!("no randomness: {e}"))))?;
                match write_new_key_file(path, &key) {
                    Ok(()) => Ok(Self::from_key(key)),
                    // Another process (a second node sharing the directory) created it between
                    // our read and our create: use its key rather than fail or overwrite.
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                        let bytes = fs::read(path).map_err(io_err)?;
                        Self::from_file_bytes(path, &bytes)
                    }
                    Err(e) => Err(io_err(e)),
                }
            }
            Err(e) => Err(io_err(e)),
        }
    }

    pub fn from_key(key: [u8; KEY_LEN]) -> Self {
        Self {
            aead: Aes256Gcm::new(&key.into()),
            key_id: key_check_value(&key),
        }
    }

    /// One byte identifying the key, stored in front of every blob.
    pub fn key_id(&self) -> u8 {
        self.key_id
    }

    /// Encrypts `plaintext` bound to `aad` (the task id bytes) into
    /// `key_id || 12-byte random nonce || ciphertext+tag`.
    pub fn encrypt(&self, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, CryptoError> {
        // A fresh random nonce per value: 96 random bits make a repeat (which would break GCM)
        // negligible for the number of values a scheduler stores under one key.
        let nonce =
            aes_gcm::aead::Nonce::<Aes256Gcm>::try_generate().map_err(|_| CryptoError::Encrypt)?;
        let sealed = self
            .aead
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .map_err(|_| CryptoError::Encrypt)?;
        let mut blob = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
        blob.push(self.key_id);
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(&sealed);
        Ok(blob)
    }

    /// Reverses [`Cipher::encrypt`]; fails unless the key, the associated data and every byte match.
    pub fn decrypt(&self, blob: &[u8], aad: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if blob.len() < MIN_BLOB_LEN || blob[0] != self.key_id {
            return Err(CryptoError::Decrypt);
        }
        let (nonce, sealed) = blob[1..].split_at(NONCE_LEN);
        let nonce =
            aes_gcm::aead::Nonce::<Aes256Gcm>::try_from(nonce).map_err(|_| CryptoError::Decrypt)?;
        self.aead
            .decrypt(&nonce, Payload { msg: sealed, aad })
            .map_err(|_| CryptoError::Decrypt)
    }

    fn from_file_bytes(path: &Path, bytes: &[u8]) -> Result<Self, CryptoError> {
        let key: [u8; KEY_LEN] = bytes.try_into().map_err(|_| {
            CryptoError::BadKeyFile(format!(
                "{} holds {} bytes, expected exactly {KEY_LEN}; refusing to use or replace it",
                path.display(),
                bytes.len()
            ))
        })?;
        Ok(Self::from_key(key))
    }
}

/// The classic key check value: the first byte of AES(key, zero block). It identifies the key
/// without revealing it and needs no hash crate beyond AES itself.
fn key_check_value(key: &[u8; KEY_LEN]) -> u8 {
    let aes = Aes256::new(&(*key).into());
    let mut block = [0u8; 16].into();
    aes.encrypt_block(&mut block);
    block[0]
}

/// Logs a warning when the file at `path` grants group or others any access: the key opens every
/// stored header, so only the service's own user should read it.
pub fn warn_if_shared(path: &Path) {
    if let Ok(meta) = fs::metadata(path) {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(
                path = %path.display(),
                mode = %format_args!("{mode:04o}"),
                "the key file is accessible to group or others; make it readable by the \
                 service's user only (chmod 600)"
            );
        }
    }
}

/// Creates the key file with mode 0600 from the start (no window in which it is world-readable)
/// and never over an existing file.
fn write_new_key_file(path: &Path, key: &[u8; KEY_LEN]) -> io::Result<()> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    let written = file.write_all(key).and_then(|()| file.sync_all());
    if let Err(e) = written {
        // A short key file would be refused on every later start; remove it so the next start
        // can create a complete one.
        drop(file);
        let _ = fs::remove_file(path);
        return Err(e);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn cipher(seed: u8) -> Cipher {
        Cipher::from_key([seed; KEY_LEN])
    }

    #[test]
    fn a_value_round_trips_through_encrypt_and_decrypt() {
        let c = cipher(7);
        let blob = c
            .encrypt(b"Authorization: Bearer s3cret", b"task-1")
            .unwrap();
        assert_eq!(blob[0], c.key_id());
        assert_eq!(blob.len(), 1 + NONCE_LEN + 28 + TAG_LEN);
        assert_eq!(
            c.decrypt(&blob, b"task-1").unwrap(),
            b"Authorization: Bearer s3cret"
        );
    }

    #[test]
    fn an_empty_plaintext_round_trips() {
        let c = cipher(7);
        let blob = c.encrypt(b"", b"t").unwrap();
        assert_eq!(c.decrypt(&blob, b"t").unwrap(), b"");
    }

    #[test]
    fn a_ciphertext_cannot_move_to_another_row() {
        let c = cipher(7);
        let blob = c.encrypt(b"secret", b"task-1").unwrap();
        assert!(matches!(
            c.decrypt(&blob, b"task-2"),
            Err(CryptoError::Decrypt)
        ));
    }

    #[test]
    fn a_different_key_cannot_decrypt() {
        let blob = cipher(1).encrypt(b"secret", b"t").unwrap();
        let other = cipher(2);
        assert_ne!(
            other.key_id(),
            cipher(1).key_id(),
            "test keys should differ in key id"
        );
        assert!(matches!(
            other.decrypt(&blob, b"t"),
            Err(CryptoError::Decrypt)
        ));
        // Even when the key id byte is forged to match, the tag check still refuses.
        let mut forged = blob.clone();
        forged[0] = other.key_id();
        assert!(matches!(
            other.decrypt(&forged, b"t"),
            Err(CryptoError::Decrypt)
        ));
    }

    #[test]
    fn any_tampered_byte_is_detected() {
        let c = cipher(7);
        let blob = c.encrypt(b"secret", b"t").unwrap();
        for i in 0..blob.len() {
            let mut bad = blob.clone();
            bad[i] ^= 0x01;
            assert!(
                c.decrypt(&bad, b"t").is_err(),
                "flip at byte {i} went unnoticed"
            );
        }
        assert!(c.decrypt(&blob[..blob.len() - 1], b"t").is_err());
        assert!(c.decrypt(&[], b"t").is_err());
    }

    #[test]
    fn two_encryptions_of_the_same_value_differ() {
        let c = cipher(7);
        let a = c.encrypt(b"secret", b"t").unwrap();
        let b = c.encrypt(b"secret", b"t").unwrap();
        assert_ne!(a, b);
        assert_ne!(a[1..1 + NONCE_LEN], b[1..1 + NONCE_LEN]);
    }

    #[test]
    fn debug_output_does_not_show_the_key() {
        let c = cipher(0xAB);
        let shown = format!("{c:?}");
        assert!(shown.starts_with("Cipher { key_id: 0x"), "{shown}");
        assert!(!shown.to_lowercase().contains("ab, ab"), "{shown}");
        assert!(!shown.contains("171"), "{shown}");
    }

    #[test]
    fn a_missing_key_file_is_created_with_mode_0600_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/data/master.key");
        let first = Cipher::load(&path, &[]).unwrap();
        let meta = fs::metadata(&path).unwrap();
        assert_eq!(meta.len(), KEY_LEN as u64);
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);

        let sealed = Sealed {
            aad: b"t".to_vec(),
            blob: first.encrypt(b"secret", b"t").unwrap(),
        };
        let second = Cipher::load(&path, std::slice::from_ref(&sealed)).unwrap();
        assert_eq!(second.decrypt(&sealed.blob, b"t").unwrap(), b"secret");
    }

    #[test]
    fn a_missing_key_is_not_created_while_encrypted_values_exist() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        let sealed = Sealed {
            aad: b"t".to_vec(),
            blob: cipher(1).encrypt(b"secret", b"t").unwrap(),
        };
        let err = Cipher::load(&path, &[sealed]).unwrap_err();
        assert!(matches!(err, CryptoError::KeyMissing { .. }), "{err:?}");
        let shown = err.to_string();
        assert!(shown.contains(&path.display().to_string()), "{shown}");
        assert!(shown.contains("backup"), "{shown}");
        assert!(shown.contains("crypto.key_file"), "{shown}");
        assert!(!path.exists(), "no key may be created");
    }

    #[test]
    fn a_key_that_opens_no_stored_value_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        fs::write(&path, [2u8; KEY_LEN]).unwrap();
        let sealed: Vec<Sealed> = (0..3)
            .map(|i| Sealed {
                aad: vec![i],
                blob: cipher(1).encrypt(b"secret", &[i]).unwrap(),
            })
            .collect();
        let err = Cipher::load(&path, &sealed).unwrap_err();
        assert!(matches!(err, CryptoError::WrongKey { .. }), "{err:?}");
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
        assert_eq!(fs::read(&path).unwrap(), vec![2u8; KEY_LEN]);
    }

    #[test]
    fn the_right_key_is_accepted_when_one_stored_value_is_damaged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        fs::write(&path, [1u8; KEY_LEN]).unwrap();
        let mut damaged = cipher(1).encrypt(b"secret", b"a").unwrap();
        damaged[20] ^= 0xff;
        let sealed = [
            Sealed {
                aad: b"a".to_vec(),
                blob: damaged,
            },
            Sealed {
                aad: b"b".to_vec(),
                blob: cipher(1).encrypt(b"secret", b"b").unwrap(),
            },
        ];
        let c = Cipher::load(&path, &sealed).unwrap();
        assert_eq!(c.key_id(), cipher(1).key_id());
    }

    #[test]
    fn a_key_file_of_the_wrong_length_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        fs::write(&path, [1u8; 31]).unwrap();
        let err = Cipher::load(&path, &[]).unwrap_err();
        assert!(matches!(err, CryptoError::BadKeyFile(_)), "{err:?}");
        assert!(err.to_string().contains("31 bytes"), "{err}");
        assert_eq!(fs::read(&path).unwrap(), vec![1u8; 31]);
    }

    #[test]
    fn an_unreadable_key_path_reports_the_path() {
        let dir = tempfile::tempdir().unwrap();
        // A directory where the key file should be: reading it fails with an I/O error.
        let path = dir.path().join("master.key");
        fs::create_dir(&path).unwrap();
        let err = Cipher::load(&path, &[]).unwrap_err();
        assert!(matches!(err, CryptoError::Io { .. }), "{err:?}");
        assert!(err.to_string().contains("master.key"), "{err}");
    }
}
