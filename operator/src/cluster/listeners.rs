//! Named Kafka listeners (`spec.listeners.kafka`) rendered for the brokers.
//!
//! Without them nothing here applies and the brokers keep their single listener on
//! `kafkaPort` (`AUTOMQ_LISTEN`, `AUTOMQ_ADVERTISED_LISTENER`, port `kafka`), rendered exactly
//! as before named listeners existed (`tests/snapshots.rs`), so an operator upgrade rolls no
//! broker. With them, for listeners `INTERNAL` (PLAINTEXT, 9092) and `EXTERNAL` (SASL_SSL with
//! SCRAM-SHA-512 and its own certificate, 9094):
//!
//! | Where | What |
//! |---|---|
//! | ConfigMap | `AUTOMQ_LISTENERS=INTERNAL://0.0.0.0:9092,EXTERNAL://0.0.0.0:9094`, `AUTOMQ_LISTENER_SECURITY_PROTOCOL_MAP=INTERNAL:PLAINTEXT,EXTERNAL:SASL_SSL`, `AUTOMQ_LISTENER_OPTIONS` (one per line: `EXTERNAL:sasl.enabled.mechanisms=SCRAM-SHA-512`, `EXTERNAL:ssl.certificate=/etc/automq/listeners/external/tls.crt`, `EXTERNAL:ssl.key=...`) |
//! | Pod env | `AUTOMQ_ADVERTISED_LISTENERS=INTERNAL://$(POD_NAME).{headless}.{ns}.svc:9092,EXTERNAL://...:9094` (per pod, so not in the shared ConfigMap) |
//! | Volumes | `tls-external`: the listener's `tlsSecret`, mounted whole and read-only at `/etc/automq/listeners/external`, files 0440 |
//! | Ports | container, headless and bootstrap Services: `internal` 9092, `external` 9094 (the headless Service and the container keep `http`) |
//!
//! Paths, names and mechanisms only: certificates stay in their Secrets. A TLS listener without
//! a `tlsSecret` uses the cluster's `security.tls` (`AUTOMQ_TLS_CERT`/`_KEY`), and each SASL
//! listener names its one mechanism, since `security.sasl` is not allowed alongside.

use std::collections::{BTreeMap, BTreeSet};

use automq_crds::cluster::{ListenerStatus, Listeners};
use automq_crds::listener::{valid_listener_name, KafkaListener, LISTENER_NAME_MAX};
use automq_crds::AutoMQClusterSpec;
use k8s_openapi::api::core::v1::{ContainerPort, ServicePort, Volume, VolumeMount};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// Where listener `x`'s own certificate is mounted: `{LISTENER_TLS_DIR}/x`.
pub const LISTENER_TLS_DIR: &str = "/etc/automq/listeners";
/// At most this many listeners (the schema's `maxItems`, which bounds its rules' cost).
pub const MAX_LISTENERS: usize = 8;

/// The named listeners of a spec, `None` for the single listener.
pub fn named(spec: &AutoMQClusterSpec) -> Option<&[KafkaListener]> {
    spec.listeners.as_ref().and_then(Listeners::named)
}

fn volume_name(listener: &KafkaListener) -> String {
    format!("tls-{}", listener.port_name())
}

fn tls_dir(listener: &KafkaListener) -> String {
    format!("{LISTENER_TLS_DIR}/{}", listener.port_name())
}

/// The brokers' listener settings for the shared ConfigMap (everything but the advertised
/// addresses, which differ per pod).
pub fn broker_settings(listeners: &[KafkaListener]) -> BTreeMap<String, String> {
    let binds: Vec<String> = listeners.iter().map(|l| format!("{}://0.0.0.0:{}", l.name, l.port)).collect();
    let protocols: Vec<String> = listeners.iter().map(|l| format!("{}:{}", l.name, l.security_protocol())).collect();
    let mut options = Vec::new();
    for l in listeners {
        if let Some(mechanism) = l.sasl_mechanism() {
            options.push(format!("{}:sasl.enabled.mechanisms={}", l.name, mechanism.as_str()));
        }
        if l.tls_secret.is_some() {
            let dir = tls_dir(l);
            options.push(format!("{}:ssl.certificate={dir}/tls.crt", l.name));
            options.push(format!("{}:ssl.key={dir}/tls.key", l.name));
        }
    }
    let mut data = BTreeMap::from([
        ("AUTOMQ_LISTENERS".to_string(), binds.join(",")),
        ("AUTOMQ_LISTENER_SECURITY_PROTOCOL_MAP".to_string(), protocols.join(",")),
    ]);
    if !options.is_empty() {
        data.insert("AUTOMQ_LISTENER_OPTIONS".into(), options.join("\n"));
    }
    data
}

/// `AUTOMQ_ADVERTISED_LISTENERS`: every listener at the pod's stable DNS name in the headless
/// Service (`$(POD_NAME)` is expanded by the kubelet), with that listener's port.
pub fn advertised(listeners: &[KafkaListener], headless: &str, namespace: &str) -> String {
    let entries: Vec<String> =
        listeners.iter().map(|l| format!("{}://$(POD_NAME).{headless}.{namespace}.svc:{}", l.name, l.port)).collect();
    entries.join(",")
}

pub fn container_ports(listeners: &[KafkaListener]) -> Vec<ContainerPort> {
    listeners
        .iter()
        .map(|l| ContainerPort { name: Some(l.port_name()), container_port: l.port, ..ContainerPort::default() })
        .collect()
}

/// One Service port per listener, named like the container's.
pub fn service_ports(listeners: &[KafkaListener]) -> Vec<ServicePort> {
    listeners
        .iter()
        .map(|l| ServicePort {
            name: Some(l.port_name()),
            port: l.port,
            target_port: Some(IntOrString::String(l.port_name())),
            ..ServicePort::default()
        })
        .collect()
}

/// The listeners' own certificates as volumes and read-only mounts (listeners using the
/// cluster's `security.tls` need none of their own).
pub fn volumes(listeners: &[KafkaListener]) -> (Vec<Volume>, Vec<VolumeMount>) {
    listeners
        .iter()
        .filter_map(|l| {
            let tls = l.tls_secret.as_ref()?;
            let name = volume_name(l);
            Some((crate::security::tls_secret_volume(&name, tls), crate::security::read_only_mount(&name, &tls_dir(l))))
        })
        .unzip()
}

/// How clients reach each listener: `status.listeners`.
pub fn statuses(listeners: &[KafkaListener], bootstrap_host: &str) -> Vec<ListenerStatus> {
    listeners
        .iter()
        .map(|l| ListenerStatus {
            name: l.name.clone(),
            port: l.port,
            protocol: l.security_protocol().into(),
            sasl_mechanism: l.sasl_mechanism().map(|m| m.as_str().into()),
            bootstrap: format!("{bootstrap_host}:{}", l.port),
        })
        .collect()
}

/// The port of a warehouse's default broker list for routine loads (`kafkaClusterRef`). That
/// default comes with no credentials and no CA, so with named listeners it is the first
/// PLAINTEXT one (else the first listener, which such loads cannot use: documented); without,
/// `kafkaPort`.
pub fn routine_load_port(listeners: Option<&Listeners>) -> i32 {
    let Some(listeners) = listeners else { return Listeners::default().kafka_port() };
    match listeners.named() {
        Some(named) if !named.is_empty() => {
            named.iter().find(|l| l.security_protocol() == "PLAINTEXT").unwrap_or(&named[0]).port
        }
        _ => listeners.kafka_port(),
    }
}

/// The schema's rules on named listeners, for API servers that do not run them.
pub fn validate(spec: &AutoMQClusterSpec) -> Result<(), String> {
    let Some(listeners) = spec.listeners.as_ref() else { return Ok(()) };
    let Some(named) = listeners.named() else { return Ok(()) };
    if named.is_empty() {
        return Err("listeners.kafka is empty: remove it for the single listener on kafkaPort".into());
    }
    if named.len() > MAX_LISTENERS {
        return Err(format!("listeners.kafka: at most {MAX_LISTENERS} listeners (got {})", named.len()));
    }
    if listeners.kafka_port.is_some() {
        return Err(
            "listeners.kafkaPort is the single listener's port: with listeners.kafka, each has its own port".into()
        );
    }
    let http_port = listeners.http_port();
    let security = spec.security.as_ref();
    let (mut names, mut ports) = (BTreeSet::new(), BTreeSet::new());
    for l in named {
        let at = format!("listeners.kafka[{}]", l.name);
        if !valid_listener_name(&l.name) {
            return Err(format!(
                "{at}: a listener name is 1-{LISTENER_NAME_MAX} upper-case letters, digits and single '_', starting \
                 with a letter, and not HTTP"
            ));
        }
        if !names.insert(l.name.as_str()) {
            return Err(format!("{at} is declared twice"));
        }
        if !(1..=65535).contains(&l.port) {
            return Err(format!("{at}: port {} is not 1-65535", l.port));
        }
        if l.port == http_port {
            return Err(format!("{at}: port {} is the HTTP port", l.port));
        }
        if !ports.insert(l.port) {
            return Err(format!("{at}: port {} is another listener's", l.port));
        }
        if let Some(tls) = &l.tls_secret {
            if !l.tls() {
                return Err(format!("{at}: tlsSecret needs tls: true"));
            }
            crate::security::check_tls(tls, &format!("{at}.tlsSecret"))?;
        }
        if l.tls() && l.tls_secret.is_none() && security.is_none_or(|s| s.tls.is_none()) {
            return Err(format!("{at}: tls needs the listener's tlsSecret or security.tls"));
        }
    }
    if security.is_some_and(|s| s.sasl.is_some()) {
        return Err("with listeners.kafka, each listener's authentication replaces security.sasl: remove it".into());
    }
    let has_users = security.and_then(|s| s.users.as_ref()).is_some_and(|u| !u.is_empty());
    if let Some(l) = named.iter().find(|l| l.sasl_mechanism().is_some()) {
        if !has_users {
            return Err(format!(
                "listeners.kafka[{}]: authentication needs security.users (the operator creates no other user)",
                l.name
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use automq_crds::listener::ListenerAuthentication;
    use automq_crds::security::TlsSecret;

    fn listener(name: &str, port: i32) -> KafkaListener {
        KafkaListener { name: name.into(), port, tls: None, authentication: None, tls_secret: None }
    }

    fn external() -> KafkaListener {
        KafkaListener {
            tls: Some(true),
            authentication: Some(ListenerAuthentication::ScramSha512),
            tls_secret: Some(TlsSecret { secret_name: "ext-tls".into(), cert_key: None, key_key: None }),
            ..listener("EXTERNAL", 9094)
        }
    }

    #[test]
    fn settings_name_paths_and_mechanisms_per_listener() {
        let tls_only = KafkaListener { tls: Some(true), ..listener("TENANT_2", 9095) };
        let data = broker_settings(&[listener("INTERNAL", 9092), external(), tls_only]);
        assert_eq!(data["AUTOMQ_LISTENERS"], "INTERNAL://0.0.0.0:9092,EXTERNAL://0.0.0.0:9094,TENANT_2://0.0.0.0:9095");
        assert_eq!(data["AUTOMQ_LISTENER_SECURITY_PROTOCOL_MAP"], "INTERNAL:PLAINTEXT,EXTERNAL:SASL_SSL,TENANT_2:SSL");
        assert_eq!(
            data["AUTOMQ_LISTENER_OPTIONS"],
            "EXTERNAL:sasl.enabled.mechanisms=SCRAM-SHA-512\n\
             EXTERNAL:ssl.certificate=/etc/automq/listeners/external/tls.crt\n\
             EXTERNAL:ssl.key=/etc/automq/listeners/external/tls.key"
        );
        assert!(!broker_settings(&[listener("INTERNAL", 9092)]).contains_key("AUTOMQ_LISTENER_OPTIONS"));
        let (volumes, mounts) = volumes(&[listener("INTERNAL", 9092), external()]);
        assert_eq!(volumes.iter().map(|v| v.name.as_str()).collect::<Vec<_>>(), ["tls-external"]);
        assert_eq!(mounts[0].mount_path, "/etc/automq/listeners/external");
    }

    #[test]
    fn routine_loads_take_the_first_plaintext_listener() {
        let with = |named: Vec<KafkaListener>| Listeners { kafka: Some(named), ..Listeners::default() };
        assert_eq!(routine_load_port(None), 9092);
        assert_eq!(routine_load_port(Some(&Listeners { kafka_port: Some(19092), ..Listeners::default() })), 19092);
        assert_eq!(routine_load_port(Some(&with(vec![external(), listener("INTERNAL", 9192)]))), 9192);
        assert_eq!(routine_load_port(Some(&with(vec![external()]))), 9094, "none is PLAINTEXT: the first");
    }
}
