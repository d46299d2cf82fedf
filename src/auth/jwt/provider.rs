//! A `jsonwebtoken` crypto provider that does HS256 over ring and refuses everything else.
//!
//! jsonwebtoken 12 has no ring backend; its own ones would add a second SHA-2/HMAC major
//! (`rust_crypto`) or a C/cmake build (`aws_lc_rs`). scangate already links ring for TLS and
//! token digests, and needs only HS256, so this provider is a few lines. Refusing every other
//! algorithm here, as well as in [`super::verify`], means no header can steer us to RSA, EC or
//! `none`.

use std::sync::Once;

use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier, KeyUtils};
use jsonwebtoken::errors::{Error, ErrorKind, Result};
use jsonwebtoken::signature::{self, Signer, Verifier};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, EncodingKey};

/// The provider: HS256 signer and verifier, and key utilities that refuse (we use no JWKs).
pub(super) static PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory: signer,
    verifier_factory: verifier,
    key_utils: KeyUtils {
        rsa_pub_components_from_private_key: |_| Err(refused()),
        rsa_pub_components_from_public_key: |_| Err(refused()),
        ec_pub_components_from_private_key: |_, _| Err(refused()),
        ed_pub_components_from_private_key: |_, _| Err(refused()),
        compute_digest: |_, _| Err(refused()),
    },
};

/// Makes [`PROVIDER`] the process default, once. jsonwebtoken allows one install per process; if
/// something else installed a provider first, that one stays, and HS256 still works through it
/// (`verify` refuses other algorithms itself).
pub(super) fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = PROVIDER.install_default();
    });
}

fn refused() -> Error {
    ErrorKind::UnsupportedAlgorithm.into()
}

/// HMAC-SHA-256 with its key schedule done, as one signer or verifier.
struct Hs256(ring::hmac::Key);

impl Hs256 {
    fn new(alg: &Algorithm, family: AlgorithmFamily, secret: &[u8]) -> Result<Hs256> {
        if *alg != Algorithm::HS256 || family != AlgorithmFamily::Hmac {
            return Err(ErrorKind::InvalidAlgorithm.into());
        }
        Ok(Hs256(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret)))
    }
}

fn signer(alg: &Algorithm, key: &EncodingKey) -> Result<Box<dyn JwtSigner>> {
    Ok(Box::new(Hs256::new(alg, key.family(), key.as_bytes())?))
}

fn verifier(alg: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>> {
    Ok(Box::new(Hs256::new(
        alg,
        key.family(),
        key.try_get_as_bytes()?,
    )?))
}

impl Signer<Vec<u8>> for Hs256 {
    fn try_sign(&self, msg: &[u8]) -> std::result::Result<Vec<u8>, signature::Error> {
        Ok(ring::hmac::sign(&self.0, msg).as_ref().to_vec())
    }
}

impl Verifier<Vec<u8>> for Hs256 {
    /// Constant-time comparison (ring), so timing tells nothing about a forged signature.
    fn verify(&self, msg: &[u8], sig: &Vec<u8>) -> std::result::Result<(), signature::Error> {
        ring::hmac::verify(&self.0, msg, sig).map_err(|_| signature::Error::new())
    }
}

impl JwtSigner for Hs256 {
    fn algorithm(&self) -> Algorithm {
        Algorithm::HS256
    }
}

impl JwtVerifier for Hs256 {
    fn algorithm(&self) -> Algorithm {
        Algorithm::HS256
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::jwk::{EllipticCurve, ThumbprintHash};

    #[test]
    fn provider_refuses_every_algorithm_but_hs256() {
        let enc = EncodingKey::from_secret(b"k").unwrap();
        let dec = DecodingKey::from_secret(b"k").unwrap();
        assert!((PROVIDER.signer_factory)(&Algorithm::HS256, &enc).is_ok());
        assert!((PROVIDER.verifier_factory)(&Algorithm::HS256, &dec).is_ok());
        for alg in [
            Algorithm::HS384,
            Algorithm::HS512,
            Algorithm::RS256,
            Algorithm::EdDSA,
        ] {
            let err = (PROVIDER.signer_factory)(&alg, &enc).err().unwrap();
            assert_eq!(*err.kind(), ErrorKind::InvalidAlgorithm, "{alg:?}");
            let err = (PROVIDER.verifier_factory)(&alg, &dec).err().unwrap();
            assert_eq!(*err.kind(), ErrorKind::InvalidAlgorithm, "{alg:?}");
        }
        // An HS256 header with a non-HMAC key (the classic RS256/HS256 confusion) is refused too.
        let rsa = DecodingKey::from_rsa_der(b"not a key");
        let err = (PROVIDER.verifier_factory)(&Algorithm::HS256, &rsa)
            .err()
            .unwrap();
        assert_eq!(*err.kind(), ErrorKind::InvalidAlgorithm);
    }

    #[test]
    fn key_utilities_refuse_instead_of_panicking() {
        let u = &PROVIDER.key_utils;
        let unsupported = |r: Result<()>| *r.unwrap_err().kind() == ErrorKind::UnsupportedAlgorithm;
        assert!(unsupported(
            (u.rsa_pub_components_from_private_key)(b"").map(drop)
        ));
        assert!(unsupported(
            (u.rsa_pub_components_from_public_key)(b"").map(drop)
        ));
        assert!(unsupported(
            (u.ec_pub_components_from_private_key)(b"", Algorithm::ES256).map(drop)
        ));
        assert!(unsupported(
            (u.ed_pub_components_from_private_key)(b"", &EllipticCurve::Ed25519).map(drop)
        ));
        assert!(unsupported(
            (u.compute_digest)(b"", ThumbprintHash::SHA256).map(drop)
        ));
    }

    #[test]
    fn hs256_matches_rfc_4231_and_verifies_only_its_own_tag() {
        // RFC 4231 test case 2, HMAC-SHA-256.
        let enc = EncodingKey::from_secret(b"Jefe").unwrap();
        let signer = (PROVIDER.signer_factory)(&Algorithm::HS256, &enc).unwrap();
        let tag = signer.try_sign(b"what do ya want for nothing?").unwrap();
        assert_eq!(tag[..4], [0x5b, 0xdc, 0xc1, 0x46]);
        assert_eq!(tag.len(), 32);
        assert_eq!(signer.algorithm(), Algorithm::HS256);
        let dec = DecodingKey::from_secret(b"Jefe").unwrap();
        let verifier = (PROVIDER.verifier_factory)(&Algorithm::HS256, &dec).unwrap();
        assert_eq!(verifier.algorithm(), Algorithm::HS256);
        assert!(verifier
            .verify(b"what do ya want for nothing?", &tag)
            .is_ok());
        assert!(verifier
            .verify(b"what do ya want for nothing!", &tag)
            .is_err());
    }

    #[test]
    fn install_makes_ours_the_default() {
        install();
        install();
        let installed = CryptoProvider::try_get_default().expect("a provider");
        assert!(std::ptr::eq(installed, &PROVIDER));
    }
}
