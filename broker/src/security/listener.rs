//! Named Kafka listeners, as Kafka configures them: each has a name, an address to bind, an
//! address to advertise, and a security protocol (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL),
//! with its own SASL mechanisms and certificate where it needs them. An internal listener and an
//! external one can thus differ: say PLAINTEXT inside the cluster network and SASL_SSL with
//! SCRAM outside. Metadata answers with every broker's address *on the listener the client came
//! in through*, so clients stay on the network they started on.
//!
//! Settings (each also an `AUTOMQ_*` variable):
//!
//! ```text
//! --listeners INTERNAL://0.0.0.0:9092,EXTERNAL://0.0.0.0:9094
//! --advertised-listeners INTERNAL://broker-0.brokers:9092,EXTERNAL://kafka.example.com:31094
//! --listener-security-protocol-map INTERNAL:PLAINTEXT,EXTERNAL:SASL_SSL
//! --listener-option EXTERNAL:sasl.enabled.mechanisms=SCRAM-SHA-512
//! --listener-option EXTERNAL:ssl.certificate=/etc/tls/external/tls.crt
//! --listener-option EXTERNAL:ssl.key=/etc/tls/external/tls.key
//! ```
//!
//! A listener without its own options uses `--sasl-mechanisms` and `--tls-cert`/`--tls-key`.
//! Without `--listeners`, the broker has one listener on `--listen`, named after its protocol
//! (PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL, from whether TLS and SASL are set).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use super::sasl::SaslMechanism;
use super::tls::ServerTls;

/// A listener's security protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl Protocol {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.to_ascii_uppercase().as_str() {
            "PLAINTEXT" => Protocol::Plaintext,
            "SSL" => Protocol::Ssl,
            "SASL_PLAINTEXT" => Protocol::SaslPlaintext,
            "SASL_SSL" => Protocol::SaslSsl,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Protocol::Plaintext => "PLAINTEXT",
            Protocol::Ssl => "SSL",
            Protocol::SaslPlaintext => "SASL_PLAINTEXT",
            Protocol::SaslSsl => "SASL_SSL",
        }
    }

    pub fn tls(self) -> bool {
        matches!(self, Protocol::Ssl | Protocol::SaslSsl)
    }

    pub fn sasl(self) -> bool {
        matches!(self, Protocol::SaslPlaintext | Protocol::SaslSsl)
    }

    fn of(tls: bool, sasl: bool) -> Self {
        match (tls, sasl) {
            (false, false) => Protocol::Plaintext,
            (true, false) => Protocol::Ssl,
            (false, true) => Protocol::SaslPlaintext,
            (true, true) => Protocol::SaslSsl,
        }
    }
}

/// One listener as configured (nothing opened yet).
#[derive(Debug, Clone, PartialEq)]
pub struct ListenerSpec {
    pub name: String,
    pub bind: SocketAddr,
    /// host:port to advertise; `None`: the bound address.
    pub advertised: Option<(String, i32)>,
    pub protocol: Protocol,
    pub sasl: Vec<SaslMechanism>,
    pub tls: Option<(PathBuf, PathBuf)>,
}

/// The inputs of [`specs`] (the broker's flags).
#[derive(Debug, Default, Clone)]
pub struct ListenerFlags<'a> {
    pub listen: Option<SocketAddr>,
    pub advertised_listener: Option<&'a str>,
    pub listeners: &'a [String],
    pub advertised_listeners: &'a [String],
    pub protocol_map: &'a [String],
    pub options: &'a [String],
    pub sasl: Vec<SaslMechanism>,
    pub tls: Option<(PathBuf, PathBuf)>,
}

fn host_port(s: &str, what: &str) -> Result<(String, i32), String> {
    let (host, port) = s.rsplit_once(':').ok_or_else(|| format!("{what} {s:?} must be host:port"))?;
    let port: u16 = port.parse().map_err(|_| format!("{what} {s:?} has a bad port"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Ok((host.to_string(), i32::from(port)))
}

/// `NAME://host:port` entries by name (names are upper-cased, as Kafka treats them).
fn named(entries: &[String], what: &str) -> Result<Vec<(String, String)>, String> {
    let mut out: Vec<(String, String)> = Vec::new();
    for e in entries.iter().map(|e| e.trim()).filter(|e| !e.is_empty()) {
        let (name, addr) = e.split_once("://").ok_or_else(|| format!("{what}: {e:?} must be NAME://host:port"))?;
        let name = name.to_ascii_uppercase();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            return Err(format!("{what}: listener name {name:?} must be letters, digits, '_' or '-'"));
        }
        if out.iter().any(|(n, _)| *n == name) {
            return Err(format!("{what}: listener {name} is named twice"));
        }
        out.push((name, addr.to_string()));
    }
    Ok(out)
}

fn parse_sasl(list: &str) -> Result<Vec<SaslMechanism>, String> {
    list.split(',')
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .map(|m| SaslMechanism::parse(m).ok_or_else(|| format!("unknown SASL mechanism {m:?}")))
        .collect()
}

/// The listeners the flags describe, validated.
pub fn specs(f: &ListenerFlags<'_>) -> Result<Vec<ListenerSpec>, String> {
    if f.listeners.iter().all(|l| l.trim().is_empty()) {
        let bind = f.listen.ok_or("no listener: set --listen or --listeners")?;
        let protocol = Protocol::of(f.tls.is_some(), !f.sasl.is_empty());
        let advertised = f.advertised_listener.map(|a| host_port(a, "--advertised-listener")).transpose()?;
        if !f.advertised_listeners.is_empty() || !f.protocol_map.is_empty() || !f.options.is_empty() {
            return Err(
                "--advertised-listeners, --listener-security-protocol-map and --listener-option need --listeners"
                    .into(),
            );
        }
        return Ok(vec![ListenerSpec {
            name: protocol.name().to_string(),
            bind,
            advertised,
            protocol,
            sasl: f.sasl.clone(),
            tls: f.tls.clone(),
        }]);
    }
    let binds = named(f.listeners, "--listeners")?;
    let advertised: BTreeMap<String, String> =
        named(f.advertised_listeners, "--advertised-listeners")?.into_iter().collect();
    for name in advertised.keys() {
        if !binds.iter().any(|(n, _)| n == name) {
            return Err(format!("--advertised-listeners names {name}, which --listeners does not"));
        }
    }
    let mut protocols = BTreeMap::new();
    for e in f.protocol_map.iter().map(|e| e.trim()).filter(|e| !e.is_empty()) {
        let (name, protocol) = e
            .split_once(':')
            .ok_or_else(|| format!("--listener-security-protocol-map: {e:?} must be NAME:PROTOCOL"))?;
        let p = Protocol::parse(protocol)
            .ok_or_else(|| format!("--listener-security-protocol-map: unknown protocol {protocol:?}"))?;
        protocols.insert(name.to_ascii_uppercase(), p);
    }
    let mut options: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for e in f.options.iter().map(|e| e.trim()).filter(|e| !e.is_empty()) {
        let (name, kv) = e.split_once(':').ok_or_else(|| format!("--listener-option: {e:?} must be NAME:key=value"))?;
        let (k, v) = kv.split_once('=').ok_or_else(|| format!("--listener-option: {e:?} must be NAME:key=value"))?;
        let name = name.to_ascii_uppercase();
        if !binds.iter().any(|(n, _)| *n == name) {
            return Err(format!("--listener-option names {name}, which --listeners does not"));
        }
        if !matches!(k, "sasl.enabled.mechanisms" | "ssl.certificate" | "ssl.key") {
            return Err(format!(
                "--listener-option: unknown option {k:?} (sasl.enabled.mechanisms, ssl.certificate, ssl.key)"
            ));
        }
        options.entry(name).or_default().insert(k.to_string(), v.to_string());
    }
    let mut out = Vec::new();
    for (name, bind) in binds {
        let protocol = match protocols.get(&name) {
            Some(p) => *p,
            None => Protocol::parse(&name).ok_or_else(|| {
                format!("listener {name} has no protocol: add {name}:PROTOCOL to --listener-security-protocol-map")
            })?,
        };
        let bind: SocketAddr = {
            let (host, port) = host_port(&bind, &format!("listener {name}"))?;
            let host = if host.is_empty() { "0.0.0.0".to_string() } else { host };
            format!("{}:{port}", if host.contains(':') { format!("[{host}]") } else { host })
                .parse()
                .map_err(|_| format!("listener {name}: {bind:?} is not an IP address and port"))?
        };
        let opts = options.remove(&name).unwrap_or_default();
        let sasl = match opts.get("sasl.enabled.mechanisms") {
            Some(list) => parse_sasl(list).map_err(|e| format!("listener {name}: {e}"))?,
            None => f.sasl.clone(),
        };
        let tls = match (opts.get("ssl.certificate"), opts.get("ssl.key")) {
            (Some(c), Some(k)) => Some((PathBuf::from(c), PathBuf::from(k))),
            (None, None) => f.tls.clone(),
            _ => return Err(format!("listener {name}: ssl.certificate and ssl.key go together")),
        };
        if protocol.sasl() && sasl.is_empty() {
            return Err(format!("listener {name} is {} but has no SASL mechanism", protocol.name()));
        }
        if protocol.tls() && tls.is_none() {
            return Err(format!("listener {name} is {} but has no certificate", protocol.name()));
        }
        let advertised =
            advertised.get(&name).map(|a| host_port(a, &format!("advertised listener {name}"))).transpose()?;
        out.push(ListenerSpec {
            name,
            bind,
            advertised,
            protocol,
            sasl: if protocol.sasl() { sasl } else { Vec::new() },
            tls: if protocol.tls() { tls } else { None },
        });
    }
    Ok(out)
}

/// A listener in use: what its connections need.
pub struct Listener {
    pub name: String,
    pub protocol: Protocol,
    /// The mechanisms clients must authenticate with (empty: no SASL).
    pub sasl: Vec<SaslMechanism>,
    pub tls: Option<ServerTls>,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener").field("name", &self.name).field("protocol", &self.protocol).finish()
    }
}

impl Listener {
    /// Loads the certificate of `spec` (when it has TLS).
    pub fn open(spec: &ListenerSpec) -> Result<Self, String> {
        let tls = match &spec.tls {
            Some((cert, key)) => Some(ServerTls::load(cert, key).map_err(|e| format!("listener {}: {e}", spec.name))?),
            None => None,
        };
        Ok(Listener { name: spec.name.clone(), protocol: spec.protocol, sasl: spec.sasl.clone(), tls })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn one_listener_from_the_simple_flags() {
        let f = ListenerFlags {
            listen: Some("127.0.0.1:9092".parse().unwrap()),
            advertised_listener: Some("kafka:19092"),
            sasl: vec![SaslMechanism::Plain],
            ..Default::default()
        };
        let l = specs(&f).unwrap();
        assert_eq!(l.len(), 1);
        assert_eq!((l[0].name.as_str(), l[0].protocol), ("SASL_PLAINTEXT", Protocol::SaslPlaintext));
        assert_eq!(l[0].advertised, Some(("kafka".to_string(), 19092)));
    }

    #[test]
    fn named_listeners_with_their_own_settings() {
        let (listeners, adv, map, opts) = (
            s(&["internal://127.0.0.1:9092", "EXTERNAL://:9094"]),
            s(&["EXTERNAL://kafka.example.com:31094"]),
            s(&["INTERNAL:PLAINTEXT", "EXTERNAL:SASL_SSL"]),
            s(&[
                "EXTERNAL:sasl.enabled.mechanisms=SCRAM-SHA-512",
                "EXTERNAL:ssl.certificate=/c",
                "EXTERNAL:ssl.key=/k",
            ]),
        );
        let f = ListenerFlags {
            listeners: &listeners,
            advertised_listeners: &adv,
            protocol_map: &map,
            options: &opts,
            sasl: vec![SaslMechanism::Plain],
            ..Default::default()
        };
        let l = specs(&f).unwrap();
        assert_eq!(l[0].name, "INTERNAL");
        assert_eq!((l[0].protocol, l[0].sasl.len(), l[0].tls.is_none()), (Protocol::Plaintext, 0, true));
        assert_eq!(l[1].bind, "0.0.0.0:9094".parse().unwrap());
        assert_eq!(l[1].sasl, vec![SaslMechanism::Scram(crate::security::scram::Mechanism::Sha512)]);
        assert_eq!(l[1].tls, Some((PathBuf::from("/c"), PathBuf::from("/k"))));
        assert_eq!(l[1].advertised, Some(("kafka.example.com".to_string(), 31094)));
    }

    #[test]
    fn mistakes_are_refused_with_the_reason() {
        // (--listeners, --listener-security-protocol-map, --listener-option, the reason)
        type Case<'a> = (&'a [&'a str], &'a [&'a str], &'a [&'a str], &'a str);
        let cases: [Case; 5] = [
            (&["CLIENT://127.0.0.1:1"], &[], &[], "no protocol"),
            (&["A://127.0.0.1:1", "a://127.0.0.1:2"], &["A:PLAINTEXT"], &[], "twice"),
            (&["A://127.0.0.1:1"], &["A:SSL"], &[], "no certificate"),
            (&["A://127.0.0.1:1"], &["A:SASL_PLAINTEXT"], &[], "no SASL mechanism"),
            (&["A://127.0.0.1:1"], &["A:PLAINTEXT"], &["B:ssl.key=/k"], "which --listeners does not"),
        ];
        for (listeners, map, opts, why) in cases {
            let (l, m, o) = (s(listeners), s(map), s(opts));
            let f = ListenerFlags { listeners: &l, protocol_map: &m, options: &o, ..Default::default() };
            let e = specs(&f).unwrap_err();
            assert!(e.contains(why), "{e:?} should say {why:?}");
        }
    }
}
