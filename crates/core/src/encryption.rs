//! Encrypted Redis backups: what the API says about a backup's encryption
//! (`DescribeBackupDetail`), as the sync cycle and the store carry it.
//!
//! An encrypted backup's files are AES-256-CBC ciphertext, not RDB files:
//! their structure cannot be checked, and the copy is useless without its
//! key. The key is a [`Secret`]: its `Debug` and `Display` print `******`,
//! so it never reaches a log line or an error; only the store reads it
//! (with `expose`), to write it into the set's key file.

use tcbackup_signing::secret::Secret;

/// How one backup is encrypted, as `DescribeBackupDetail` answered at
/// fetch time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encryption {
    /// `KeyAlgorithm` (documented: only `AES-256-CBC`); may be empty when
    /// the API leaves it out.
    pub algorithm: String,
    /// `KmsKeyId`, empty when the API gives none.
    pub kms_key_id: String,
    /// `DecryptKey`, or `None` when the API returned none (a key held by
    /// KMS): the set is then published without it, with a warning.
    pub key: Option<Secret>,
}

impl Encryption {
    /// Whether tcbackup holds the decryption key for this backup.
    pub fn key_held(&self) -> bool {
        self.key.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_never_prints() {
        let e = Encryption {
            algorithm: "AES-256-CBC".into(),
            kms_key_id: "kms-1".into(),
            key: Some(Secret::new("00112233445566778899aabbccddeeff")),
        };
        let shown = format!("{e:?}");
        assert!(!shown.contains("00112233"), "{shown}");
        assert!(shown.contains("AES-256-CBC"), "{shown}");
        assert!(e.key_held());
    }
}
