//! SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677): the mechanisms' primitives,
//! shared with the broker's server side, and the client side of the exchange that a
//! broker runs when its inter-broker listener authenticates with SCRAM (as Kafka's
//! `ScramSaslClient`).

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::Rng;
use sha2::{Digest, Sha256, Sha512};

/// Length of the client nonce (Kafka's `ScramFormatter.secureRandomString` makes
/// about as many characters).
const CLIENT_NONCE_CHARS: usize = 32;

/// The two mechanisms, with Kafka's type numbers (AlterUserScramCredentials,
/// `UserScramCredentialRecord`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScramMechanism {
    Sha256,
    Sha512,
}

impl ScramMechanism {
    pub fn from_name(name: &str) -> Option<ScramMechanism> {
        match name {
            "SCRAM-SHA-256" => Some(ScramMechanism::Sha256),
            "SCRAM-SHA-512" => Some(ScramMechanism::Sha512),
            _ => None,
        }
    }

    pub fn from_type(t: i8) -> Option<ScramMechanism> {
        match t {
            1 => Some(ScramMechanism::Sha256),
            2 => Some(ScramMechanism::Sha512),
            _ => None,
        }
    }

    pub fn type_id(self) -> i8 {
        match self {
            ScramMechanism::Sha256 => 1,
            ScramMechanism::Sha512 => 2,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ScramMechanism::Sha256 => "SCRAM-SHA-256",
            ScramMechanism::Sha512 => "SCRAM-SHA-512",
        }
    }

    /// H(data).
    pub fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            ScramMechanism::Sha256 => Sha256::digest(data).to_vec(),
            ScramMechanism::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    /// HMAC(key, data).
    pub fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        match self {
            ScramMechanism::Sha256 => {
                let mut mac =
                    Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
                mac.update(data);
                mac.finalize().into_bytes().to_vec()
            }
            ScramMechanism::Sha512 => {
                let mut mac =
                    Hmac::<Sha512>::new_from_slice(key).expect("HMAC takes keys of any length");
                mac.update(data);
                mac.finalize().into_bytes().to_vec()
            }
        }
    }

    /// StoredKey and ServerKey from a salted password (RFC 5802 section 3).
    pub fn keys(self, salted_password: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let client_key = self.hmac(salted_password, b"Client Key");
        let stored_key = self.hash(&client_key);
        let server_key = self.hmac(salted_password, b"Server Key");
        (stored_key, server_key)
    }

    /// Hi(password, salt, i): PBKDF2 with this mechanism's HMAC.
    pub fn salted_password(self, password: &[u8], salt: &[u8], iterations: i32) -> Vec<u8> {
        let mut first = salt.to_vec();
        first.extend_from_slice(&1u32.to_be_bytes());
        let mut u = self.hmac(password, &first);
        let mut result = u.clone();
        for _ in 1..iterations {
            u = self.hmac(password, &u);
            for (r, x) in result.iter_mut().zip(&u) {
                *r ^= x;
            }
        }
        result
    }
}

/// The client's side of one exchange: [`ScramClient::first`], then
/// [`ScramClient::answer`] to the server's first message, then
/// [`ScramClient::verify`] of the server's final message (the server proves it knows
/// the stored keys: a client that skips this could be talking to anyone).
pub struct ScramClient {
    mechanism: ScramMechanism,
    password: String,
    client_nonce: String,
    client_first_bare: String,
    /// ServerSignature expected in the server's final message, once computed.
    server_signature: Option<Vec<u8>>,
}

/// Kafka's `ScramMechanism` bounds on a credential's iterations. A client refuses a
/// server's first message outside them, as Kafka's `ScramSaslClient` does: fewer would
/// let a man in the middle brute-force the proof cheaply, more would make the broker
/// spend its time on PBKDF2 for a hostile peer.
pub const MIN_ITERATIONS: i32 = 4096;
pub const MAX_ITERATIONS: i32 = 16384;

impl ScramClient {
    pub fn new(mechanism: ScramMechanism, username: &str, password: &str) -> ScramClient {
        let client_nonce: String = rand::rng()
            .sample_iter(&rand::distr::Alphanumeric)
            .take(CLIENT_NONCE_CHARS)
            .map(char::from)
            .collect();
        let user = username.replace('=', "=3D").replace(',', "=2C");
        ScramClient {
            mechanism,
            password: password.to_string(),
            client_first_bare: format!("n={user},r={client_nonce}"),
            client_nonce,
            server_signature: None,
        }
    }

    /// The client's first message (no channel binding, no authorization id).
    pub fn first(&self) -> Vec<u8> {
        format!("n,,{}", self.client_first_bare).into_bytes()
    }

    /// The client's final message (with its proof), given the server's first message.
    pub fn answer(&mut self, server_first: &[u8]) -> Result<Vec<u8>, String> {
        let server_first = std::str::from_utf8(server_first)
            .map_err(|_| "the server's first SCRAM message is not UTF-8".to_string())?;
        let fields = attributes(server_first)?;
        let nonce = fields
            .get("r")
            .ok_or("the server's first SCRAM message has no nonce")?;
        if !nonce.starts_with(&self.client_nonce) || nonce.len() == self.client_nonce.len() {
            return Err("the server's SCRAM nonce does not extend the client's".into());
        }
        let salt = fields
            .get("s")
            .and_then(|s| BASE64.decode(s).ok())
            .ok_or("the server's first SCRAM message has no valid salt")?;
        let iterations: i32 = fields
            .get("i")
            .and_then(|i| i.parse().ok())
            .ok_or("the server's first SCRAM message has no valid iteration count")?;
        if iterations < MIN_ITERATIONS {
            return Err(format!(
                "Requested iterations {iterations} is less than the minimum {MIN_ITERATIONS} for {}",
                self.mechanism.name()
            ));
        }
        if iterations > MAX_ITERATIONS {
            return Err(format!(
                "Requested iterations {iterations} is more than the maximum {MAX_ITERATIONS} for {}",
                self.mechanism.name()
            ));
        }
        let m = self.mechanism;
        let salted = m.salted_password(self.password.as_bytes(), &salt, iterations);
        // "biws" is base64("n,,"): the GS2 header of the first message.
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{server_first},{without_proof}", self.client_first_bare);
        let client_key = m.hmac(&salted, b"Client Key");
        let stored_key = m.hash(&client_key);
        let client_signature = m.hmac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&client_signature)
            .map(|(a, b)| a ^ b)
            .collect();
        let server_key = m.hmac(&salted, b"Server Key");
        self.server_signature = Some(m.hmac(&server_key, auth_message.as_bytes()));
        Ok(format!("{without_proof},p={}", BASE64.encode(proof)).into_bytes())
    }

    /// Check the server's final message: its signature, or the error it reports.
    pub fn verify(&self, server_final: &[u8]) -> Result<(), String> {
        let text = std::str::from_utf8(server_final)
            .map_err(|_| "the server's final SCRAM message is not UTF-8".to_string())?;
        let fields = attributes(text)?;
        if let Some(error) = fields.get("e") {
            return Err(format!("the server refused the SCRAM exchange: {error}"));
        }
        let expected = self
            .server_signature
            .as_ref()
            .ok_or("the server's final message came before the client's proof")?;
        match fields.get("v").and_then(|v| BASE64.decode(v).ok()) {
            Some(signature) if signature == *expected => Ok(()),
            _ => Err(
                "the server's SCRAM signature is invalid: it does not know this user's keys".into(),
            ),
        }
    }
}

/// `k=v,k=v` attributes of a SCRAM message.
pub fn attributes(text: &str) -> Result<std::collections::HashMap<&str, &str>, String> {
    text.split(',')
        .map(|kv| {
            kv.split_once('=')
                .ok_or_else(|| format!("invalid SCRAM attribute {kv}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The client against a server computed from RFC 5802's formulas with a known
    /// salt: the proof the server checks and the signature the client checks.
    #[test]
    fn client_exchange_matches_the_server_formulas() {
        for m in [ScramMechanism::Sha256, ScramMechanism::Sha512] {
            let mut client = ScramClient::new(m, "br=ok,er", "s3cret");
            let first = String::from_utf8(client.first()).unwrap();
            let bare = first.strip_prefix("n,,").unwrap().to_string();
            assert!(bare.starts_with("n=br=3Dok=2Cer,r="), "{bare}");
            let client_nonce = bare.rsplit_once("r=").unwrap().1.to_string();
            let salt = b"0123456789abcdef";
            let server_first = format!(
                "r={client_nonce}SERVERPART,s={},i=4096",
                BASE64.encode(salt)
            );
            let final_message =
                String::from_utf8(client.answer(server_first.as_bytes()).unwrap()).unwrap();
            let (without_proof, proof) = final_message.rsplit_once(",p=").unwrap();
            assert_eq!(without_proof, format!("c=biws,r={client_nonce}SERVERPART"));
            // The server's check: H(proof XOR HMAC(StoredKey, AuthMessage)) == StoredKey.
            let salted = m.salted_password(b"s3cret", salt, 4096);
            let (stored_key, server_key) = m.keys(&salted);
            let auth = format!("{bare},{server_first},{without_proof}");
            let signature = m.hmac(&stored_key, auth.as_bytes());
            let proof = BASE64.decode(proof).unwrap();
            let client_key: Vec<u8> = proof.iter().zip(&signature).map(|(a, b)| a ^ b).collect();
            assert_eq!(m.hash(&client_key), stored_key);
            let server_final = format!("v={}", BASE64.encode(m.hmac(&server_key, auth.as_bytes())));
            client.verify(server_final.as_bytes()).unwrap();
            assert!(client.verify(b"v=AAAA").is_err());
            assert!(client.verify(b"e=invalid-proof").is_err());
        }
    }

    #[test]
    fn a_server_nonce_that_does_not_extend_ours_is_refused() {
        let mut client = ScramClient::new(ScramMechanism::Sha256, "u", "p");
        let salt = BASE64.encode(b"salt");
        assert!(client
            .answer(format!("r=someoneelse,s={salt},i=4096").as_bytes())
            .is_err());
        let first = String::from_utf8(client.first()).unwrap();
        let nonce = first.rsplit_once("r=").unwrap().1.to_string();
        // The bare client nonce, not extended, is refused too.
        assert!(client
            .answer(format!("r={nonce},s={salt},i=4096").as_bytes())
            .is_err());
        assert!(client
            .answer(format!("r={nonce}x,s={salt},i=0").as_bytes())
            .is_err());
        // Kafka's bounds: a man in the middle asking for few iterations is refused, and
        // so is a hostile server asking for a million.
        let err = client
            .answer(format!("r={nonce}x,s={salt},i=4095").as_bytes())
            .unwrap_err();
        assert_eq!(
            err,
            "Requested iterations 4095 is less than the minimum 4096 for SCRAM-SHA-256"
        );
        assert!(client
            .answer(format!("r={nonce}x,s={salt},i=1000000").as_bytes())
            .is_err());
        assert!(client
            .answer(format!("r={nonce}x,s={salt},i=16384").as_bytes())
            .is_ok());
    }
}
