//! SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677) as Kafka uses them: credentials are
//! stored salted and hashed (salt, iterations, StoredKey, ServerKey; never the password), and the
//! server side of the exchange checks a client's proof without learning the password.
//!
//! Kafka's AlterUserScramCredentials carries the salted password (the client runs the slow
//! PBKDF2), from which [`Credential::from_salted_password`] derives what is stored.

use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256, Sha512};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Kafka's limits on SCRAM iterations.
pub const MIN_ITERATIONS: i32 = 4096;
pub const MAX_ITERATIONS: i32 = 16384;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub enum Mechanism {
    #[serde(rename = "SCRAM-SHA-256")]
    Sha256,
    #[serde(rename = "SCRAM-SHA-512")]
    Sha512,
}

impl Mechanism {
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Sha256 => "SCRAM-SHA-256",
            Mechanism::Sha512 => "SCRAM-SHA-512",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "SCRAM-SHA-256" => Some(Mechanism::Sha256),
            "SCRAM-SHA-512" => Some(Mechanism::Sha512),
            _ => None,
        }
    }

    /// Kafka's ScramMechanism codes (AlterUserScramCredentials): 1 = SHA-256, 2 = SHA-512.
    pub fn from_code(code: i8) -> Option<Self> {
        match code {
            1 => Some(Mechanism::Sha256),
            2 => Some(Mechanism::Sha512),
            _ => None,
        }
    }

    pub fn code(self) -> i8 {
        match self {
            Mechanism::Sha256 => 1,
            Mechanism::Sha512 => 2,
        }
    }

    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        match self {
            Mechanism::Sha256 => {
                let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
            Mechanism::Sha512 => {
                let mut m = <Hmac<Sha512> as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
        }
    }

    fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            Mechanism::Sha256 => Sha256::digest(data).to_vec(),
            Mechanism::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    /// Hi() of RFC 5802: PBKDF2 with this HMAC, one block.
    pub fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        let mut block = salt.to_vec();
        block.extend_from_slice(&1u32.to_be_bytes());
        let mut u = self.hmac(password, &block);
        let mut out = u.clone();
        for _ in 1..iterations {
            u = self.hmac(password, &u);
            for (o, x) in out.iter_mut().zip(&u) {
                *o ^= x;
            }
        }
        out
    }
}

/// What is stored for one user and mechanism.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Credential {
    pub mechanism: Mechanism,
    #[serde(with = "b64")]
    pub salt: Vec<u8>,
    pub iterations: i32,
    #[serde(with = "b64")]
    pub stored_key: Vec<u8>,
    #[serde(with = "b64")]
    pub server_key: Vec<u8>,
}

mod b64 {
    use base64::Engine;

    pub(super) fn serialize<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::B64.encode(v))
    }

    pub(super) fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s: String = serde::Deserialize::deserialize(d)?;
        super::B64.decode(s).map_err(serde::de::Error::custom)
    }
}

impl Credential {
    pub fn from_salted_password(mechanism: Mechanism, salt: Vec<u8>, iterations: i32, salted: &[u8]) -> Self {
        let client_key = mechanism.hmac(salted, b"Client Key");
        Credential {
            mechanism,
            salt,
            iterations,
            stored_key: mechanism.hash(&client_key),
            server_key: mechanism.hmac(salted, b"Server Key"),
        }
    }

    pub fn from_password(mechanism: Mechanism, password: &str, salt: Vec<u8>, iterations: i32) -> Self {
        let salted = mechanism.salted_password(password.as_bytes(), &salt, iterations.max(1) as u32);
        Self::from_salted_password(mechanism, salt, iterations, &salted)
    }

    /// Whether `password` is this credential's (SASL/PLAIN checks passwords this way, so one
    /// store of salted, hashed credentials serves both mechanisms).
    pub fn matches_password(&self, password: &str) -> bool {
        let other = Self::from_password(self.mechanism, password, self.salt.clone(), self.iterations);
        constant_time_eq(&other.stored_key, &self.stored_key)
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Why an exchange failed. The client only ever learns "authentication failed".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    #[error("channel binding is not supported")]
    ChannelBinding,
    #[error("unknown user or wrong password")]
    BadCredentials,
}

/// The server side of one exchange.
#[derive(Debug)]
pub struct ScramServer {
    mechanism: Mechanism,
    state: State,
}

#[derive(Debug)]
enum State {
    Initial,
    /// Waiting for the client-final message.
    First {
        user: String,
        client_first_bare: String,
        server_first: String,
        nonce: String,
        credential: Option<Credential>,
    },
    Done,
}

fn unescape_user(s: &str) -> Result<String, ScramError> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        match rest.get(i..i + 3) {
            Some("=2C") => out.push(','),
            Some("=3D") => out.push('='),
            _ => return Err(ScramError::Malformed("bad escape in the user name")),
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

fn attr(part: &str, name: char) -> Option<&str> {
    part.strip_prefix(name)?.strip_prefix('=')
}

impl ScramServer {
    pub fn new(mechanism: Mechanism) -> Self {
        ScramServer { mechanism, state: State::Initial }
    }

    /// The client-first message: returns the user it names (to look its credential up).
    pub fn user_of(client_first: &str) -> Result<String, ScramError> {
        let bare = Self::bare(client_first)?;
        let user = bare.split(',').next().and_then(|p| attr(p, 'n')).ok_or(ScramError::Malformed("no user"))?;
        unescape_user(user)
    }

    fn bare(client_first: &str) -> Result<&str, ScramError> {
        // gs2 header: "n,," (no channel binding) or "y,," (client supports it, we do not);
        // "p=..." asks for binding. An authzid ("a=...") is allowed and ignored.
        let mut parts = client_first.splitn(3, ',');
        let cb = parts.next().ok_or(ScramError::Malformed("empty message"))?;
        if cb.starts_with('p') {
            return Err(ScramError::ChannelBinding);
        }
        if cb != "n" && cb != "y" {
            return Err(ScramError::Malformed("bad channel binding flag"));
        }
        parts.next().ok_or(ScramError::Malformed("no authzid field"))?;
        parts.next().ok_or(ScramError::Malformed("no client-first-bare"))
    }

    /// Answers the client-first message. `credential` is the user's (None: unknown user; the
    /// exchange goes on with a fake salt, so the answer does not tell whether the user exists).
    pub fn first(
        &mut self,
        client_first: &str,
        credential: Option<Credential>,
        server_nonce: &str,
    ) -> Result<String, ScramError> {
        if !matches!(self.state, State::Initial) {
            return Err(ScramError::Malformed("unexpected client-first message"));
        }
        let bare = Self::bare(client_first)?.to_string();
        let mut fields = bare.split(',');
        let user = unescape_user(fields.next().and_then(|p| attr(p, 'n')).ok_or(ScramError::Malformed("no user"))?)?;
        let client_nonce = fields.next().and_then(|p| attr(p, 'r')).ok_or(ScramError::Malformed("no nonce"))?;
        if client_nonce.is_empty() {
            return Err(ScramError::Malformed("empty nonce"));
        }
        let credential = credential.filter(|c| c.mechanism == self.mechanism);
        let (salt, iterations) = match &credential {
            Some(c) => (c.salt.clone(), c.iterations),
            // Same shape as a real answer, stable per user name.
            None => {
                (self.mechanism.hash(format!("automq-unknown-user:{user}").as_bytes())[..16].to_vec(), MIN_ITERATIONS)
            }
        };
        let nonce = format!("{client_nonce}{server_nonce}");
        let server_first = format!("r={nonce},s={},i={iterations}", B64.encode(&salt));
        self.state =
            State::First { user, client_first_bare: bare, server_first: server_first.clone(), nonce, credential };
        Ok(server_first)
    }

    /// Checks the client-final message; returns the server-final message and the user.
    pub fn last(&mut self, client_final: &str) -> Result<(String, String), ScramError> {
        let State::First { user, client_first_bare, server_first, nonce, credential } =
            std::mem::replace(&mut self.state, State::Done)
        else {
            return Err(ScramError::Malformed("unexpected client-final message"));
        };
        let (without_proof, proof) =
            client_final.rsplit_once(",p=").ok_or(ScramError::Malformed("no proof in the client-final message"))?;
        let mut fields = without_proof.split(',');
        let binding = fields.next().and_then(|p| attr(p, 'c')).ok_or(ScramError::Malformed("no channel binding"))?;
        let got_nonce = fields.next().and_then(|p| attr(p, 'r')).ok_or(ScramError::Malformed("no nonce"))?;
        // Kafka accepts a nonce that ends with the server-first one, and librdkafka 2.0 (still
        // Debian's) sends its client nonce twice: accept the same. The proof covers what the
        // client sent either way.
        if !got_nonce.ends_with(nonce.as_str()) {
            return Err(ScramError::Malformed("the nonce changed"));
        }
        if binding != "biws" && binding != "eSws" {
            // base64 of "n,," or "y,,": no channel binding data.
            return Err(ScramError::ChannelBinding);
        }
        let proof = B64.decode(proof).map_err(|_| ScramError::Malformed("proof is not base64"))?;
        let credential = credential.ok_or(ScramError::BadCredentials)?;
        let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
        let client_signature = self.mechanism.hmac(&credential.stored_key, auth_message.as_bytes());
        if proof.len() != client_signature.len() {
            return Err(ScramError::BadCredentials);
        }
        let client_key: Vec<u8> = proof.iter().zip(&client_signature).map(|(p, s)| p ^ s).collect();
        if !constant_time_eq(&self.mechanism.hash(&client_key), &credential.stored_key) {
            return Err(ScramError::BadCredentials);
        }
        let server_signature = self.mechanism.hmac(&credential.server_key, auth_message.as_bytes());
        Ok((format!("v={}", B64.encode(server_signature)), user))
    }
}

/// The client side of one exchange (a topic link authenticating to its source cluster).
#[derive(Debug)]
pub struct ScramClient {
    mechanism: Mechanism,
    password: String,
    client_first_bare: String,
    nonce: String,
    /// The ServerSignature the server must send back (after the client-final message).
    expect: Option<Vec<u8>>,
}

fn escape_user(user: &str) -> String {
    user.replace('=', "=3D").replace(',', "=2C")
}

impl ScramClient {
    pub fn new(mechanism: Mechanism, user: &str, password: &str) -> Self {
        let nonce = B64.encode(rand::random::<[u8; 18]>());
        ScramClient {
            mechanism,
            password: password.to_string(),
            client_first_bare: format!("n={},r={nonce}", escape_user(user)),
            nonce,
            expect: None,
        }
    }

    /// The client-first message.
    pub fn first(&self) -> String {
        format!("n,,{}", self.client_first_bare)
    }

    /// The client-final message answering `server_first`.
    pub fn last(&mut self, server_first: &str) -> Result<String, ScramError> {
        let mut fields = server_first.split(',');
        let nonce = fields.next().and_then(|p| attr(p, 'r')).ok_or(ScramError::Malformed("no nonce"))?;
        let salt = fields.next().and_then(|p| attr(p, 's')).ok_or(ScramError::Malformed("no salt"))?;
        let iterations = fields.next().and_then(|p| attr(p, 'i')).ok_or(ScramError::Malformed("no iterations"))?;
        if !nonce.starts_with(&self.nonce) || nonce.len() == self.nonce.len() {
            return Err(ScramError::Malformed("the server's nonce does not extend ours"));
        }
        let salt = B64.decode(salt).map_err(|_| ScramError::Malformed("salt is not base64"))?;
        let iterations: u32 = iterations.parse().map_err(|_| ScramError::Malformed("bad iteration count"))?;
        if !(1..=1_000_000).contains(&iterations) {
            return Err(ScramError::Malformed("iteration count out of range"));
        }
        let salted = self.mechanism.salted_password(self.password.as_bytes(), &salt, iterations);
        let client_key = self.mechanism.hmac(&salted, b"Client Key");
        let stored_key = self.mechanism.hash(&client_key);
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{server_first},{without_proof}", self.client_first_bare);
        let signature = self.mechanism.hmac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key.iter().zip(&signature).map(|(k, s)| k ^ s).collect();
        let server_key = self.mechanism.hmac(&salted, b"Server Key");
        self.expect = Some(self.mechanism.hmac(&server_key, auth_message.as_bytes()));
        Ok(format!("{without_proof},p={}", B64.encode(proof)))
    }

    /// Checks the server-final message (the server proves it knows the credential too).
    pub fn verify(&self, server_final: &str) -> Result<(), ScramError> {
        if server_final.starts_with("e=") {
            return Err(ScramError::BadCredentials);
        }
        let signature = attr(server_final, 'v').ok_or(ScramError::Malformed("no server signature"))?;
        let signature = B64.decode(signature).map_err(|_| ScramError::Malformed("signature is not base64"))?;
        match &self.expect {
            Some(expect) if constant_time_eq(expect, &signature) => Ok(()),
            _ => Err(ScramError::Malformed("the server's signature is wrong")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677's SCRAM-SHA-256 example, end to end.
    #[test]
    fn rfc7677_example() {
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let credential = Credential::from_password(Mechanism::Sha256, "pencil", salt, 4096);
        let mut server = ScramServer::new(Mechanism::Sha256);
        let client_first = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
        assert_eq!(ScramServer::user_of(client_first).unwrap(), "user");
        let server_first =
            server.first(client_first, Some(credential.clone()), "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0").unwrap();
        assert_eq!(
            server_first,
            "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
        );
        let client_final = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
        let (server_final, user) = server.last(client_final).unwrap();
        assert_eq!(server_final, "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
        assert_eq!(user, "user");
        assert!(credential.matches_password("pencil") && !credential.matches_password("Pencil"));
    }

    #[test]
    fn a_wrong_proof_and_an_unknown_user_fail_the_same_way() {
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let credential = Credential::from_password(Mechanism::Sha256, "pencil", salt, 4096);
        let bad = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
        let mut s = ScramServer::new(Mechanism::Sha256);
        s.first("n,,n=user,r=rOprNGfwEbeRWgbNEkqO", Some(credential), "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0").unwrap();
        assert_eq!(s.last(bad), Err(ScramError::BadCredentials));
        let mut s = ScramServer::new(Mechanism::Sha256);
        let first = s.first("n,,n=nobody,r=abc", None, "xyz").unwrap();
        assert!(first.starts_with("r=abcxyz,s=") && first.ends_with(",i=4096"), "{first}");
        assert_eq!(s.last("c=biws,r=abcxyz,p=AAAA"), Err(ScramError::BadCredentials));
        let mut s = ScramServer::new(Mechanism::Sha256);
        assert_eq!(s.first("p=tls-unique,,n=u,r=a", None, "b"), Err(ScramError::ChannelBinding));
        let mut s = ScramServer::new(Mechanism::Sha256);
        s.first("n,,n=u,r=abc", None, "xyz").unwrap();
        assert_eq!(s.last("c=biws,r=abcXYZ,p=AAAA"), Err(ScramError::Malformed("the nonce changed")));
    }

    #[test]
    fn user_names_are_unescaped_and_credentials_round_trip_as_json() {
        assert_eq!(ScramServer::user_of("n,,n=a=2Cb=3Dc,r=x").unwrap(), "a,b=c");
        assert!(ScramServer::user_of("n,,n=a=2,r=x").is_err());
        let c = Credential::from_password(Mechanism::Sha512, "secret", vec![1, 2, 3], 4096);
        let json = serde_json::to_string(&c).unwrap();
        assert!(json.contains("SCRAM-SHA-512") && !json.contains("secret"), "{json}");
        assert_eq!(serde_json::from_str::<Credential>(&json).unwrap(), c);
        assert_eq!(c.stored_key.len(), 64);
    }

    #[test]
    fn our_client_and_our_server_agree_and_a_wrong_password_fails() {
        for m in [Mechanism::Sha256, Mechanism::Sha512] {
            let credential = Credential::from_password(m, "pencil", b"salty".to_vec(), 4096);
            for (password, ok) in [("pencil", true), ("crayon", false)] {
                let mut client = ScramClient::new(m, "u=s,er", password);
                let mut server = ScramServer::new(m);
                assert_eq!(ScramServer::user_of(&client.first()).unwrap(), "u=s,er");
                let server_first = server.first(&client.first(), Some(credential.clone()), "srv").unwrap();
                let client_final = client.last(&server_first).unwrap();
                match server.last(&client_final) {
                    Ok((server_final, user)) => {
                        assert!(ok, "a wrong password was accepted");
                        assert_eq!(user, "u=s,er");
                        client.verify(&server_final).unwrap();
                        assert!(client.verify("v=AAAA").is_err(), "a forged server signature is refused");
                    }
                    Err(e) => assert!(!ok && e == ScramError::BadCredentials, "{e}"),
                }
            }
        }
    }
}
