//! Checksums registries publish for their archives (npm's Subresource Integrity strings and
//! legacy SHA-1 `shasum`, PyPI's and crates.io's SHA-256 hex), verified before anything is
//! unpacked.

use std::fmt;

use base64::Engine;
use sha1::Sha1;
use sha2::{Digest, Sha256, Sha512};

use crate::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Algorithm {
    Sha1,
    Sha256,
    Sha512,
}

impl Algorithm {
    fn name(self) -> &'static str {
        match self {
            Self::Sha1 => "sha1",
            Self::Sha256 => "sha256",
            Self::Sha512 => "sha512",
        }
    }

    fn digest(self, bytes: &[u8]) -> Vec<u8> {
        match self {
            Self::Sha1 => Sha1::digest(bytes).to_vec(),
            Self::Sha256 => Sha256::digest(bytes).to_vec(),
            Self::Sha512 => Sha512::digest(bytes).to_vec(),
        }
    }
}

/// An expected digest of a downloaded file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Checksum {
    algorithm: Algorithm,
    digest: Vec<u8>,
}

impl Checksum {
    /// The strongest hash of an SRI string (`sha512-BASE64 sha1-BASE64`), as npm's `integrity`.
    pub fn from_integrity(integrity: &str) -> Option<Self> {
        integrity
            .split_whitespace()
            .filter_map(|item| {
                let (name, value) = item.split_once('-')?;
                let algorithm = match name {
                    "sha512" => Algorithm::Sha512,
                    "sha256" => Algorithm::Sha256,
                    "sha1" => Algorithm::Sha1,
                    _ => return None,
                };
                // SRI allows `?options` after the digest.
                let value = value.split('?').next().unwrap_or(value);
                let digest = base64::engine::general_purpose::STANDARD
                    .decode(value)
                    .ok()?;
                Some(Self { algorithm, digest })
            })
            .max_by_key(|checksum| checksum.algorithm)
    }

    pub fn sha256_hex(hex: &str) -> Option<Self> {
        Self::from_hex(Algorithm::Sha256, hex)
    }

    pub fn sha1_hex(hex: &str) -> Option<Self> {
        Self::from_hex(Algorithm::Sha1, hex)
    }

    fn from_hex(algorithm: Algorithm, hex: &str) -> Option<Self> {
        let hex = hex.trim();
        if hex.is_empty() || !hex.len().is_multiple_of(2) || !hex.is_ascii() {
            return None;
        }
        let digest = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok())
            .collect::<Option<Vec<u8>>>()?;
        Some(Self { algorithm, digest })
    }

    /// Refuses `bytes` unless they hash to the expected digest.
    pub fn verify(&self, url: &str, bytes: &[u8]) -> Result<(), Error> {
        let actual = Self {
            algorithm: self.algorithm,
            digest: self.algorithm.digest(bytes),
        };
        if actual == *self {
            Ok(())
        } else {
            Err(Error::ChecksumMismatch {
                url: url.to_owned(),
                expected: self.to_string(),
                actual: actual.to_string(),
            })
        }
    }
}

impl fmt::Display for Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:", self.algorithm.name())?;
        self.digest
            .iter()
            .try_for_each(|byte| write!(f, "{byte:02x}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integrity_takes_the_strongest_hash_and_verifies() {
        let body = b"hello";
        let sha512 = base64::engine::general_purpose::STANDARD.encode(Sha512::digest(body));
        let sha1 = base64::engine::general_purpose::STANDARD.encode(Sha1::digest(body));
        let checksum = Checksum::from_integrity(&format!("sha1-{sha1} sha512-{sha512}")).unwrap();
        assert!(checksum.to_string().starts_with("sha512:"));
        checksum.verify("u", body).unwrap();
        let error = checksum.verify("u", b"other").unwrap_err().to_string();
        assert!(error.contains("checksum mismatch"), "{error}");
    }

    #[test]
    fn hex_digests_parse_and_bad_ones_do_not() {
        let hex = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
        let checksum = Checksum::sha256_hex(hex).unwrap();
        assert_eq!(checksum.to_string(), format!("sha256:{hex}"));
        checksum.verify("u", b"hello").unwrap();
        assert!(Checksum::sha256_hex("abc").is_none());
        assert!(Checksum::sha256_hex("zz").is_none());
        assert!(Checksum::from_integrity("md5-abc").is_none());
    }
}
