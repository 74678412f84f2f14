//! SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677) on the server side, as Kafka's
//! `ScramSaslServer`: the client's first message names the user and a nonce, the server
//! answers with the user's salt, iteration count and a longer nonce, the client proves
//! it knows the salted password, the server proves it knows the stored keys. Only
//! salted keys are stored (by the controller); passwords never reach the broker except
//! as AlterUserScramCredentials' salted password, from which the keys are derived.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use rand::Rng;

/// Kafka's limits on a credential's iterations (`ScramMechanism.minIterations`/
/// `maxIterations`).
pub use ottla_client::scram::{MAX_ITERATIONS, MIN_ITERATIONS};

use ottla_client::scram::attributes;
/// The mechanisms and their primitives live with the client side of the exchange
/// (brokers authenticate to each other with SCRAM too).
pub use ottla_client::scram::ScramMechanism;

/// A stored credential, as the server reads it.
#[derive(Debug, Clone)]
pub struct StoredCredential {
    pub salt: Vec<u8>,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
    pub iterations: i32,
}

/// Kafka's reason for every failed SCRAM exchange, whatever went wrong (so that a
/// client cannot tell an unknown user from a wrong password).
pub fn failure_message(mechanism: ScramMechanism) -> String {
    format!(
        "Authentication failed during authentication due to invalid credentials with SASL mechanism {}",
        mechanism.name()
    )
}

/// One SCRAM exchange in progress.
#[derive(Debug)]
pub enum ScramExchange {
    /// Waiting for the client's first message.
    First,
    /// The server's first message went out; waiting for the client's proof.
    Final {
        user: String,
        credential: StoredCredential,
        client_first_bare: String,
        server_first: String,
        nonce: String,
        gs2_header: String,
    },
}

/// What one client message leads to.
pub enum ScramStep {
    /// Send this and wait for the next message.
    Continue(Vec<u8>),
    /// Authenticated as this user; send the server's final message.
    Done { user: String, reply: Vec<u8> },
    /// Refused (the reason is for the log only; the client gets [`failure_message`]).
    Failed(String),
}

impl ScramExchange {
    pub fn step(
        &mut self,
        mechanism: ScramMechanism,
        message: &[u8],
        lookup: &dyn Fn(&str) -> Option<StoredCredential>,
    ) -> ScramStep {
        let Ok(text) = std::str::from_utf8(message) else {
            return ScramStep::Failed("the message is not UTF-8".into());
        };
        match std::mem::replace(self, ScramExchange::First) {
            ScramExchange::First => self.client_first(text, lookup),
            ScramExchange::Final {
                user,
                credential,
                client_first_bare,
                server_first,
                nonce,
                gs2_header,
            } => {
                let fields = match attributes(text) {
                    Ok(f) => f,
                    Err(e) => return ScramStep::Failed(e),
                };
                let channel_binding = fields.get("c").copied().unwrap_or_default();
                if BASE64.decode(channel_binding).ok().as_deref() != Some(gs2_header.as_bytes()) {
                    return ScramStep::Failed("invalid channel binding".into());
                }
                if fields.get("r").copied() != Some(nonce.as_str()) {
                    return ScramStep::Failed(
                        "Invalid client nonce in the final client message.".into(),
                    );
                }
                let Some(proof) = fields.get("p").and_then(|p| BASE64.decode(p).ok()) else {
                    return ScramStep::Failed("no client proof".into());
                };
                let Some(without_proof) = text.rsplit_once(",p=").map(|(head, _)| head) else {
                    return ScramStep::Failed("no client proof".into());
                };
                let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
                let client_signature =
                    mechanism.hmac(&credential.stored_key, auth_message.as_bytes());
                if proof.len() != client_signature.len() {
                    return ScramStep::Failed("Invalid client credentials".into());
                }
                let client_key = xor(&proof, &client_signature);
                if !constant_time_eq(&mechanism.hash(&client_key), &credential.stored_key) {
                    return ScramStep::Failed("Invalid client credentials".into());
                }
                let server_signature =
                    mechanism.hmac(&credential.server_key, auth_message.as_bytes());
                ScramStep::Done {
                    user,
                    reply: format!("v={}", BASE64.encode(server_signature)).into_bytes(),
                }
            }
        }
    }

    fn client_first(
        &mut self,
        text: &str,
        lookup: &dyn Fn(&str) -> Option<StoredCredential>,
    ) -> ScramStep {
        // gs2-header: "n,," or "n,a=<authzid>,"; channel binding ("p=") is not offered.
        let mut parts = text.splitn(3, ',');
        let (Some(flag), Some(authzid), Some(bare)) = (parts.next(), parts.next(), parts.next())
        else {
            return ScramStep::Failed("invalid client first message".into());
        };
        if flag != "n" && flag != "y" {
            return ScramStep::Failed(format!("unsupported channel binding flag {flag}"));
        }
        let fields = match attributes(bare) {
            Ok(f) => f,
            Err(e) => return ScramStep::Failed(e),
        };
        let (Some(user), Some(client_nonce)) = (fields.get("n"), fields.get("r")) else {
            return ScramStep::Failed("invalid client first message".into());
        };
        let user = user.replace("=2C", ",").replace("=3D", "=");
        if let Some(requested) = authzid.strip_prefix("a=") {
            if requested != user {
                return ScramStep::Failed(
                    "Authentication failed: Client requested an authorization id that is different from username"
                        .into(),
                );
            }
        }
        let Some(credential) = lookup(&user) else {
            return ScramStep::Failed(format!("no credential for user {user}"));
        };
        let server_nonce: String = rand::rng()
            .sample_iter(&rand::distr::Alphanumeric)
            .take(32)
            .map(char::from)
            .collect();
        let nonce = format!("{client_nonce}{server_nonce}");
        let server_first = format!(
            "r={nonce},s={},i={}",
            BASE64.encode(&credential.salt),
            credential.iterations
        );
        let reply = server_first.clone().into_bytes();
        *self = ScramExchange::Final {
            user,
            credential,
            client_first_bare: bare.to_string(),
            server_first,
            nonce,
            gs2_header: format!("{flag},{authzid},"),
        };
        ScramStep::Continue(reply)
    }
}

/// RFC 5802's XOR of a key and a signature of the same length.
fn xor(a: &[u8], b: &[u8]) -> Vec<u8> {
    a.iter().zip(b).map(|(x, y)| x ^ y).collect()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677's SCRAM-SHA-256 example (user "user", password "pencil"), with the
    /// server nonce taken from the server's first message.
    #[test]
    fn rfc7677_keys_and_exchange() {
        let m = ScramMechanism::Sha256;
        let salt = BASE64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let salted = m.salted_password(b"pencil", &salt, 4096);
        let (stored_key, server_key) = m.keys(&salted);
        let client_first_bare = "n=user,r=rOprNGfwEbeRWgbNEkqO";
        let server_first =
            "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        let client_final_without_proof =
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        let auth = format!("{client_first_bare},{server_first},{client_final_without_proof}");
        let client_key = m.hmac(&salted, b"Client Key");
        let signature = m.hmac(&stored_key, auth.as_bytes());
        let proof = xor(&client_key, &signature);
        assert_eq!(
            BASE64.encode(&proof),
            "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        assert_eq!(
            BASE64.encode(m.hmac(&server_key, auth.as_bytes())),
            "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
        // The server side of the same exchange (its nonce is random, so the proof is
        // recomputed for it).
        let credential = StoredCredential {
            salt: salt.clone(),
            stored_key: stored_key.clone(),
            server_key,
            iterations: 4096,
        };
        let lookup = |u: &str| (u == "user").then(|| credential.clone());
        let mut exchange = ScramExchange::First;
        let ScramStep::Continue(first) =
            exchange.step(m, format!("n,,{client_first_bare}").as_bytes(), &lookup)
        else {
            panic!("a known user gets the server's first message")
        };
        let first = String::from_utf8(first).unwrap();
        let nonce = first.split(',').next().unwrap().strip_prefix("r=").unwrap();
        assert!(nonce.starts_with("rOprNGfwEbeRWgbNEkqO") && nonce.len() > 20);
        let without_proof = format!("c=biws,r={nonce}");
        let auth = format!("{client_first_bare},{first},{without_proof}");
        let signature = m.hmac(&stored_key, auth.as_bytes());
        let proof = xor(&client_key, &signature);
        let final_message = format!("{without_proof},p={}", BASE64.encode(&proof));
        match exchange.step(m, final_message.as_bytes(), &lookup) {
            ScramStep::Done { user, reply } => {
                assert_eq!(user, "user");
                assert!(reply.starts_with(b"v="));
            }
            _ => panic!("the right proof authenticates"),
        }
    }

    #[test]
    fn unknown_users_bad_proofs_and_nonces_fail() {
        let m = ScramMechanism::Sha512;
        let salted = m.salted_password(b"secret", b"salt", 4096);
        let (stored_key, server_key) = m.keys(&salted);
        let credential = StoredCredential {
            salt: b"salt".to_vec(),
            stored_key,
            server_key,
            iterations: 4096,
        };
        let lookup = |u: &str| (u == "alice").then(|| credential.clone());
        let mut exchange = ScramExchange::First;
        assert!(matches!(
            exchange.step(m, b"n,,n=bob,r=abc", &lookup),
            ScramStep::Failed(_)
        ));
        // alice's exchange after the server's first message, and the combined nonce.
        let started = || {
            let mut exchange = ScramExchange::First;
            let ScramStep::Continue(first) = exchange.step(m, b"n,,n=alice,r=abc", &lookup) else {
                panic!("alice exists")
            };
            let first = String::from_utf8(first).unwrap();
            let nonce = first.split(',').next().unwrap().strip_prefix("r=").unwrap();
            (exchange, nonce.to_string())
        };
        let (mut exchange, nonce) = started();
        let bad_nonce = format!("c=biws,r={nonce}x,p={}", BASE64.encode([0u8; 64]));
        match exchange.step(m, bad_nonce.as_bytes(), &lookup) {
            ScramStep::Failed(why) => assert!(why.contains("nonce"), "{why}"),
            _ => panic!("a changed nonce fails"),
        }
        let (mut exchange, nonce) = started();
        let bad_proof = format!("c=biws,r={nonce},p={}", BASE64.encode([7u8; 64]));
        assert!(matches!(
            exchange.step(m, bad_proof.as_bytes(), &lookup),
            ScramStep::Failed(_)
        ));
    }
}
