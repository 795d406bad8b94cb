//! Secrets: random tokens, their stored hashes, and Argon2id passwords.
//!
//! Tokens carry a prefix naming their kind (`alto_s_` session, `alto_h_` host credential,
//! `alto_e_` enrollment) followed by 256 random bits in base64url. Only SHA-256 of a token is
//! stored: tokens are high-entropy, so a slow hash adds nothing but latency.

use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::Argon2;
use base64::Engine as _;
use rand::RngCore as _;
use sha2::{Digest, Sha256};

pub const SESSION_PREFIX: &str = "alto_s_";
pub const HOST_PREFIX: &str = "alto_h_";
pub const ENROLL_PREFIX: &str = "alto_e_";

/// A new random token with `prefix`.
pub fn new_token(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("{prefix}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// The stored form of a token.
pub fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// Whether `token` has the shape of a token of this kind (cheap rejection before the DB).
pub fn looks_like(token: &str, prefix: &str) -> bool {
    token.len() == prefix.len() + 43
        && token.starts_with(prefix)
        && token[prefix.len()..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn argon() -> Argon2<'static> {
    // OWASP 2023 minimum for Argon2id: m=19 MiB, t=2, p=1.
    let params = argon2::Params::new(19 * 1024, 2, 1, None).unwrap_or_default();
    Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
}

/// Hashes a password (blocking; call from `spawn_blocking`).
pub fn hash_password(password: &str) -> String {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).expect("16 bytes is a valid salt length");
    argon().hash_password(password.as_bytes(), &salt).map(|h| h.to_string()).unwrap_or_default()
}

/// Checks a password against a stored hash (blocking).
pub fn verify_password(password: &str, stored: &str) -> bool {
    match PasswordHash::new(stored) {
        Ok(parsed) => argon().verify_password(password.as_bytes(), &parsed).is_ok(),
        Err(_) => false,
    }
}

/// Runs the hash off the async workers.
pub async fn hash_password_async(password: String) -> String {
    tokio::task::spawn_blocking(move || hash_password(&password)).await.unwrap_or_default()
}

pub async fn verify_password_async(password: String, stored: String) -> bool {
    tokio::task::spawn_blocking(move || verify_password(&password, &stored)).await.unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_round_trip() {
        let h = hash_password("correct horse battery staple");
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse battery staple", &h));
        assert!(!verify_password("wrong horse battery staple", &h));
        assert!(!verify_password("x", "not a hash"));
    }

    #[test]
    fn tokens_have_shape_and_entropy() {
        let a = new_token(HOST_PREFIX);
        let b = new_token(HOST_PREFIX);
        assert_ne!(a, b);
        assert!(looks_like(&a, HOST_PREFIX));
        assert!(!looks_like(&a, SESSION_PREFIX));
        assert!(!looks_like("alto_h_' OR 1=1 --", HOST_PREFIX));
        assert_eq!(token_hash(&a).len(), 32);
    }
}
