//! Kafka ACLs: the model (resource type, literal or prefixed pattern, principal, host,
//! operation, allow or deny), their storage in cluster metadata, the authorizer's decision, and
//! CreateAcls / DescribeAcls / DeleteAcls.
//!
//! Each ACL is one metadata key, `acl/` followed by the binding as JSON, so every broker sees
//! the same ACLs, they survive restarts and they do not depend on which broker is controller.
//! The decision follows Kafka's `StandardAuthorizer`:
//!
//! 1. super users may do everything;
//! 2. the ACLs that apply to a resource are the literal ones on its name, the literal ones on
//!    `*`, and the prefixed ones whose prefix starts its name;
//! 3. a DENY that matches the principal (or `User:*`), the host (or `*`) and the operation (or
//!    ALL) refuses;
//! 4. otherwise an ALLOW that matches permits; READ, WRITE, DELETE and ALTER imply DESCRIBE,
//!    ALTER_CONFIGS implies DESCRIBE_CONFIGS;
//! 5. with no ACL at all on the resource, `--allow-everyone-if-no-acl-found` decides
//!    (default: refuse).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use automq_storage::metadata::CatalogRecord;
use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::delete_acls_response::{DeleteAclsFilterResult, DeleteAclsMatchingAcl};
use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::{
    CreateAclsRequest, CreateAclsResponse, DeleteAclsRequest, DeleteAclsResponse, DescribeAclsRequest,
    DescribeAclsResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use serde::{Deserialize, Serialize};

use crate::broker::Broker;

/// Metadata keys of ACLs.
pub const PREFIX: &str = "acl/";
/// The one cluster resource's name.
pub const CLUSTER_NAME: &str = "kafka-cluster";
/// The principal of a client that did not authenticate.
pub const ANONYMOUS: &str = "User:ANONYMOUS";

/// Resource types (Kafka's codes).
pub mod resource {
    pub const ANY: i8 = 1;
    pub const TOPIC: i8 = 2;
    pub const GROUP: i8 = 3;
    pub const CLUSTER: i8 = 4;
    pub const TRANSACTIONAL_ID: i8 = 5;
    pub const DELEGATION_TOKEN: i8 = 6;
    pub const USER: i8 = 7;
}

/// Pattern types (Kafka's codes).
pub mod pattern {
    pub const ANY: i8 = 1;
    pub const MATCH: i8 = 2;
    pub const LITERAL: i8 = 3;
    pub const PREFIXED: i8 = 4;
}

/// Operations (Kafka's codes).
pub mod op {
    pub const ANY: i8 = 1;
    pub const ALL: i8 = 2;
    pub const READ: i8 = 3;
    pub const WRITE: i8 = 4;
    pub const CREATE: i8 = 5;
    pub const DELETE: i8 = 6;
    pub const ALTER: i8 = 7;
    pub const DESCRIBE: i8 = 8;
    pub const CLUSTER_ACTION: i8 = 9;
    pub const DESCRIBE_CONFIGS: i8 = 10;
    pub const ALTER_CONFIGS: i8 = 11;
    pub const IDEMPOTENT_WRITE: i8 = 12;
    pub const CREATE_TOKENS: i8 = 13;
    pub const DESCRIBE_TOKENS: i8 = 14;
}

/// Permission types (Kafka's codes).
pub mod permission {
    pub const ANY: i8 = 1;
    pub const DENY: i8 = 2;
    pub const ALLOW: i8 = 3;
}

/// The operations that make sense on a resource type (what authorized-operations reports).
pub fn operations_of(resource_type: i8) -> &'static [i8] {
    use op::*;
    match resource_type {
        resource::TOPIC => &[READ, WRITE, CREATE, DELETE, ALTER, DESCRIBE, DESCRIBE_CONFIGS, ALTER_CONFIGS],
        resource::GROUP => &[READ, DESCRIBE, DELETE],
        resource::CLUSTER => {
            &[CREATE, CLUSTER_ACTION, DESCRIBE_CONFIGS, ALTER_CONFIGS, IDEMPOTENT_WRITE, ALTER, DESCRIBE]
        }
        resource::TRANSACTIONAL_ID => &[DESCRIBE, WRITE],
        resource::DELEGATION_TOKEN => &[DESCRIBE],
        resource::USER => &[CREATE_TOKENS, DESCRIBE_TOKENS],
        _ => &[],
    }
}

/// The authorized-operations bit set of `ops` (bit `code` per allowed operation).
pub fn bits(ops: impl IntoIterator<Item = i8>) -> i32 {
    ops.into_iter().fold(0, |acc, o| acc | (1 << o))
}

/// One ACL, as Kafka's AclBinding.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AclBinding {
    pub resource_type: i8,
    pub resource_name: String,
    pub pattern_type: i8,
    pub principal: String,
    pub host: String,
    pub operation: i8,
    pub permission: i8,
}

impl AclBinding {
    fn key(&self) -> String {
        // Field order is fixed by the struct, so one binding always has one key.
        format!("{PREFIX}{}", serde_json::to_string(self).expect("an ACL serializes"))
    }

    /// Why this binding cannot be stored, if it cannot (Kafka's checks).
    pub fn invalid(&self) -> Option<String> {
        let rt = self.resource_type;
        if !(resource::TOPIC..=resource::USER).contains(&rt) {
            return Some(format!("resource type {rt} cannot be used in an ACL"));
        }
        if !matches!(self.pattern_type, pattern::LITERAL | pattern::PREFIXED) {
            return Some("the pattern type must be LITERAL or PREFIXED".into());
        }
        if self.resource_name.is_empty() {
            return Some("the resource name is empty".into());
        }
        if rt == resource::CLUSTER && (self.resource_name != CLUSTER_NAME || self.pattern_type != pattern::LITERAL) {
            return Some(format!("the cluster resource is the literal name {CLUSTER_NAME}"));
        }
        if self.pattern_type == pattern::PREFIXED && self.resource_name == "*" {
            return Some("a prefixed pattern cannot be the wildcard".into());
        }
        if !(op::ALL..=op::DESCRIBE_TOKENS).contains(&self.operation) {
            return Some(format!("operation {} cannot be used in an ACL", self.operation));
        }
        if self.operation != op::ALL && !operations_of(rt).contains(&self.operation) {
            return Some(format!("operation {} does not apply to resource type {rt}", self.operation));
        }
        if !matches!(self.permission, permission::ALLOW | permission::DENY) {
            return Some("the permission type must be ALLOW or DENY".into());
        }
        match self.principal.split_once(':') {
            Some((kind, name)) if !kind.is_empty() && !name.is_empty() => {}
            _ => return Some(format!("principal {:?} is not of the form Type:name", self.principal)),
        }
        if self.host.is_empty() {
            return Some("the host is empty (use * for any host)".into());
        }
        None
    }
}

/// A filter of DescribeAcls / DeleteAcls.
#[derive(Debug, Clone)]
pub struct AclFilter {
    pub resource_type: i8,
    pub resource_name: Option<String>,
    pub pattern_type: i8,
    pub principal: Option<String>,
    pub host: Option<String>,
    pub operation: i8,
    pub permission: i8,
}

impl AclFilter {
    /// Why this filter cannot be used, if it cannot.
    pub fn invalid(&self) -> Option<String> {
        if self.resource_type < resource::ANY || self.resource_type > resource::USER {
            return Some(format!("unknown resource type {}", self.resource_type));
        }
        if !(pattern::ANY..=pattern::PREFIXED).contains(&self.pattern_type) {
            return Some(format!("unknown pattern type {}", self.pattern_type));
        }
        if !(op::ANY..=op::DESCRIBE_TOKENS).contains(&self.operation) {
            return Some(format!("unknown operation {}", self.operation));
        }
        if !(permission::ANY..=permission::ALLOW).contains(&self.permission) {
            return Some(format!("unknown permission type {}", self.permission));
        }
        None
    }

    pub fn matches(&self, b: &AclBinding) -> bool {
        let any = |want: i8, anyv: i8, got: i8| want == anyv || want == got;
        if !any(self.resource_type, resource::ANY, b.resource_type)
            || !any(self.operation, op::ANY, b.operation)
            || !any(self.permission, permission::ANY, b.permission)
            || self.principal.as_ref().is_some_and(|p| *p != b.principal)
            || self.host.as_ref().is_some_and(|h| *h != b.host)
        {
            return false;
        }
        match (self.pattern_type, &self.resource_name) {
            (pattern::ANY, None) => true,
            (pattern::ANY, Some(n)) => *n == b.resource_name,
            // MATCH: the bindings that would apply to a resource of that name.
            (pattern::MATCH, None) => true,
            (pattern::MATCH, Some(n)) => match b.pattern_type {
                pattern::LITERAL => b.resource_name == *n || b.resource_name == "*",
                pattern::PREFIXED => n.starts_with(&b.resource_name),
                _ => false,
            },
            (p, n) => p == b.pattern_type && n.as_ref().is_none_or(|n| *n == b.resource_name),
        }
    }
}

/// One stored ACL's match data.
#[derive(Debug, Clone)]
struct Entry {
    principal: String,
    host: String,
    operation: i8,
    permission: i8,
}

/// Every ACL of the cluster, indexed for decisions (built once per metadata version).
#[derive(Debug, Default)]
pub struct Acls {
    all: Vec<AclBinding>,
    literal: HashMap<(i8, String), Vec<Entry>>,
    prefixed: HashMap<(i8, String), Vec<Entry>>,
    /// Longest prefixed pattern per resource type (bounds the prefix lookups).
    longest_prefix: HashMap<i8, usize>,
}

impl Acls {
    pub fn from_raw(raw: &BTreeMap<String, String>) -> Self {
        let mut acls = Acls::default();
        for (k, v) in raw.range(PREFIX.to_string()..).take_while(|(k, _)| k.starts_with(PREFIX)) {
            match serde_json::from_str::<AclBinding>(v) {
                Ok(b) => acls.insert(b),
                Err(e) => tracing::error!(key = %k, error = %e, "unreadable ACL record; skipping it"),
            }
        }
        acls
    }

    fn insert(&mut self, b: AclBinding) {
        let e = Entry {
            principal: b.principal.clone(),
            host: b.host.clone(),
            operation: b.operation,
            permission: b.permission,
        };
        let key = (b.resource_type, b.resource_name.clone());
        if b.pattern_type == pattern::PREFIXED {
            let longest = self.longest_prefix.entry(b.resource_type).or_default();
            *longest = (*longest).max(b.resource_name.len());
            self.prefixed.entry(key).or_default().push(e);
        } else {
            self.literal.entry(key).or_default().push(e);
        }
        self.all.push(b);
    }

    pub fn bindings(&self) -> &[AclBinding] {
        &self.all
    }

    pub fn is_empty(&self) -> bool {
        self.all.is_empty()
    }

    /// The entries that apply to a resource.
    fn applying<'a>(&'a self, resource_type: i8, name: &'a str) -> impl Iterator<Item = &'a Entry> + 'a {
        let literal =
            [name, "*"].into_iter().filter_map(move |n| self.literal.get(&(resource_type, n.to_string()))).flatten();
        let longest = self.longest_prefix.get(&resource_type).copied().unwrap_or(0).min(name.len());
        let prefixed = (1..=longest)
            .filter(move |&len| name.is_char_boundary(len))
            .filter_map(move |len| self.prefixed.get(&(resource_type, name[..len].to_string())))
            .flatten();
        literal.chain(prefixed)
    }
}

/// The authorizer's settings.
#[derive(Debug, Clone, Default)]
pub struct AuthorizerConfig {
    pub enabled: bool,
    pub super_users: Vec<String>,
    pub allow_if_no_acl: bool,
}

impl AuthorizerConfig {
    /// From `--authorizer`, `--super-users` and `--allow-everyone-if-no-acl-found`.
    pub fn parse(authorizer: &str, super_users: &str, allow_if_no_acl: bool) -> Result<Self, String> {
        let enabled = match authorizer {
            "" | "none" => false,
            "acl" => true,
            other => return Err(format!("unknown authorizer {other:?} (none or acl)")),
        };
        let mut users = Vec::new();
        for u in super_users.split(';').map(str::trim).filter(|u| !u.is_empty()) {
            match u.split_once(':') {
                Some((kind, name)) if !kind.is_empty() && !name.is_empty() => users.push(u.to_string()),
                _ => return Err(format!("super user {u:?} is not of the form User:name")),
            }
        }
        Ok(AuthorizerConfig { enabled, super_users: users, allow_if_no_acl })
    }
}

/// Who asks: the principal and the client's host.
#[derive(Debug, Clone)]
pub struct Subject {
    pub principal: String,
    pub host: String,
}

/// Whether `subject` may perform `operation` on a resource.
pub fn authorize(
    config: &AuthorizerConfig,
    acls: &Acls,
    subject: &Subject,
    resource_type: i8,
    name: &str,
    operation: i8,
) -> bool {
    if !config.enabled || config.super_users.contains(&subject.principal) {
        return true;
    }
    let mut any = false;
    let mut allowed = false;
    for e in acls.applying(resource_type, name) {
        any = true;
        let who = e.principal == subject.principal || e.principal == "User:*";
        let whence = e.host == "*" || e.host == subject.host;
        if !(who && whence) {
            continue;
        }
        match e.permission {
            permission::DENY if e.operation == operation || e.operation == op::ALL => return false,
            permission::ALLOW if implies(e.operation, operation) => allowed = true,
            _ => {}
        }
    }
    allowed || (!any && config.allow_if_no_acl)
}

/// Whether an ALLOW of `granted` permits `wanted`.
fn implies(granted: i8, wanted: i8) -> bool {
    granted == wanted
        || granted == op::ALL
        || (wanted == op::DESCRIBE && matches!(granted, op::READ | op::WRITE | op::DELETE | op::ALTER))
        || (wanted == op::DESCRIBE_CONFIGS && granted == op::ALTER_CONFIGS)
}

fn msg(s: impl Into<String>) -> Option<StrBytes> {
    Some(StrBytes::from_string(s.into()))
}

fn security_disabled() -> (i16, Option<StrBytes>) {
    (ResponseError::SecurityDisabled.code(), msg("no authorizer is configured on this broker (--authorizer acl)"))
}

async fn submit(broker: &Broker, records: Vec<CatalogRecord>) -> Result<(), String> {
    if records.is_empty() {
        return Ok(());
    }
    broker.cluster.catalog().submit(records).await.map(|_| ()).map_err(|e| e.to_string())
}

pub async fn create(broker: &Arc<Broker>, r: CreateAclsRequest) -> CreateAclsResponse {
    let mut results = Vec::with_capacity(r.creations.len());
    if !broker.authorizer.enabled {
        let (code, m) = security_disabled();
        results.resize(r.creations.len(), AclCreationResult::default().with_error_code(code).with_error_message(m));
        return CreateAclsResponse::default().with_results(results);
    }
    let mut records = Vec::new();
    let mut valid = Vec::new();
    for c in &r.creations {
        let b = AclBinding {
            resource_type: c.resource_type,
            resource_name: c.resource_name.to_string(),
            pattern_type: c.resource_pattern_type,
            principal: c.principal.to_string(),
            host: c.host.to_string(),
            operation: c.operation,
            permission: c.permission_type,
        };
        match b.invalid() {
            Some(why) => {
                results.push(
                    AclCreationResult::default()
                        .with_error_code(ResponseError::InvalidRequest.code())
                        .with_error_message(msg(why)),
                );
                valid.push(false);
            }
            None => {
                let value = serde_json::to_string(&b).expect("an ACL serializes");
                records.push(CatalogRecord::KvPut { key: b.key(), value });
                results.push(AclCreationResult::default());
                valid.push(true);
            }
        }
    }
    if let Err(e) = submit(broker, records).await {
        tracing::warn!(error = %e, "storing ACLs failed");
        for (res, ok) in results.iter_mut().zip(valid) {
            if ok {
                *res = AclCreationResult::default()
                    .with_error_code(ResponseError::UnknownServerError.code())
                    .with_error_message(msg(format!("storing the ACL failed: {e}")));
            }
        }
    }
    CreateAclsResponse::default().with_results(results)
}

fn filter_of(
    resource_type: i8,
    name: &Option<StrBytes>,
    pattern_type: i8,
    principal: &Option<StrBytes>,
    host: &Option<StrBytes>,
    operation: i8,
    permission: i8,
) -> AclFilter {
    AclFilter {
        resource_type,
        resource_name: name.as_ref().map(|s| s.to_string()),
        pattern_type,
        principal: principal.as_ref().map(|s| s.to_string()),
        host: host.as_ref().map(|s| s.to_string()),
        operation,
        permission,
    }
}

pub fn describe(broker: &Arc<Broker>, r: DescribeAclsRequest) -> DescribeAclsResponse {
    if !broker.authorizer.enabled {
        let (code, m) = security_disabled();
        return DescribeAclsResponse::default().with_error_code(code).with_error_message(m);
    }
    let filter = filter_of(
        r.resource_type_filter,
        &r.resource_name_filter,
        r.pattern_type_filter,
        &r.principal_filter,
        &r.host_filter,
        r.operation,
        r.permission_type,
    );
    if let Some(why) = filter.invalid() {
        return DescribeAclsResponse::default()
            .with_error_code(ResponseError::InvalidRequest.code())
            .with_error_message(msg(why));
    }
    let view = broker.cluster.view();
    let mut grouped: BTreeMap<(i8, String, i8), Vec<AclDescription>> = BTreeMap::new();
    for b in view.acls.bindings().iter().filter(|b| filter.matches(b)) {
        grouped.entry((b.resource_type, b.resource_name.clone(), b.pattern_type)).or_default().push(
            AclDescription::default()
                .with_principal(StrBytes::from_string(b.principal.clone()))
                .with_host(StrBytes::from_string(b.host.clone()))
                .with_operation(b.operation)
                .with_permission_type(b.permission),
        );
    }
    let resources = grouped
        .into_iter()
        .map(|((t, n, p), acls)| {
            DescribeAclsResource::default()
                .with_resource_type(t)
                .with_resource_name(StrBytes::from_string(n))
                .with_pattern_type(p)
                .with_acls(acls)
        })
        .collect();
    DescribeAclsResponse::default().with_resources(resources)
}

pub async fn delete(broker: &Arc<Broker>, r: DeleteAclsRequest) -> DeleteAclsResponse {
    if !broker.authorizer.enabled {
        let (code, m) = security_disabled();
        let results = r
            .filters
            .iter()
            .map(|_| DeleteAclsFilterResult::default().with_error_code(code).with_error_message(m.clone()))
            .collect();
        return DeleteAclsResponse::default().with_filter_results(results);
    }
    let view = broker.cluster.view();
    let mut records = Vec::new();
    let mut deleted = std::collections::HashSet::new();
    let mut results = Vec::with_capacity(r.filters.len());
    for f in &r.filters {
        let filter = filter_of(
            f.resource_type_filter,
            &f.resource_name_filter,
            f.pattern_type_filter,
            &f.principal_filter,
            &f.host_filter,
            f.operation,
            f.permission_type,
        );
        if let Some(why) = filter.invalid() {
            results.push(
                DeleteAclsFilterResult::default()
                    .with_error_code(ResponseError::InvalidRequest.code())
                    .with_error_message(msg(why)),
            );
            continue;
        }
        let mut matching = Vec::new();
        for b in view.acls.bindings().iter().filter(|b| filter.matches(b)) {
            if deleted.insert(b.clone()) {
                records.push(CatalogRecord::KvDelete { key: b.key() });
            }
            matching.push(
                DeleteAclsMatchingAcl::default()
                    .with_resource_type(b.resource_type)
                    .with_resource_name(StrBytes::from_string(b.resource_name.clone()))
                    .with_pattern_type(b.pattern_type)
                    .with_principal(StrBytes::from_string(b.principal.clone()))
                    .with_host(StrBytes::from_string(b.host.clone()))
                    .with_operation(b.operation)
                    .with_permission_type(b.permission),
            );
        }
        results.push(DeleteAclsFilterResult::default().with_matching_acls(matching));
    }
    if let Err(e) = submit(broker, records).await {
        tracing::warn!(error = %e, "deleting ACLs failed");
        for res in &mut results {
            if res.error_code == 0 {
                *res = DeleteAclsFilterResult::default()
                    .with_error_code(ResponseError::UnknownServerError.code())
                    .with_error_message(msg(format!("deleting the ACLs failed: {e}")));
            }
        }
    }
    DeleteAclsResponse::default().with_filter_results(results)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(rt: i8, name: &str, pt: i8, principal: &str, operation: i8, perm: i8) -> AclBinding {
        AclBinding {
            resource_type: rt,
            resource_name: name.into(),
            pattern_type: pt,
            principal: principal.into(),
            host: "*".into(),
            operation,
            permission: perm,
        }
    }

    fn acls(bindings: Vec<AclBinding>) -> Acls {
        let mut a = Acls::default();
        for b in bindings {
            a.insert(b);
        }
        a
    }

    fn alice() -> Subject {
        Subject { principal: "User:alice".into(), host: "10.0.0.1".into() }
    }

    fn on() -> AuthorizerConfig {
        AuthorizerConfig { enabled: true, super_users: vec!["User:admin".into()], allow_if_no_acl: false }
    }

    #[test]
    fn literal_prefixed_wildcard_and_deny() {
        use resource::TOPIC;
        let a = acls(vec![
            binding(TOPIC, "orders", pattern::LITERAL, "User:alice", op::READ, permission::ALLOW),
            binding(TOPIC, "pay", pattern::PREFIXED, "User:alice", op::WRITE, permission::ALLOW),
            binding(TOPIC, "payroll", pattern::LITERAL, "User:alice", op::ALL, permission::DENY),
            binding(TOPIC, "*", pattern::LITERAL, "User:*", op::DESCRIBE, permission::ALLOW),
        ]);
        let c = on();
        assert!(authorize(&c, &a, &alice(), TOPIC, "orders", op::READ));
        assert!(!authorize(&c, &a, &alice(), TOPIC, "orders", op::WRITE));
        assert!(authorize(&c, &a, &alice(), TOPIC, "payments", op::WRITE));
        assert!(authorize(&c, &a, &alice(), TOPIC, "payments", op::DESCRIBE), "WRITE implies DESCRIBE");
        assert!(!authorize(&c, &a, &alice(), TOPIC, "payroll", op::WRITE), "DENY wins over a prefixed ALLOW");
        assert!(!authorize(&c, &a, &alice(), TOPIC, "payroll", op::DESCRIBE), "DENY ALL denies DESCRIBE");
        assert!(authorize(&c, &a, &alice(), TOPIC, "anything", op::DESCRIBE), "wildcard principal and name");
        assert!(!authorize(&c, &a, &alice(), TOPIC, "anything", op::READ));
        let admin = Subject { principal: "User:admin".into(), host: "h".into() };
        assert!(authorize(&c, &a, &admin, TOPIC, "payroll", op::WRITE), "super users bypass ACLs");
        assert!(authorize(&AuthorizerConfig::default(), &a, &alice(), TOPIC, "payroll", op::WRITE), "disabled");
    }

    #[test]
    fn hosts_and_no_acl_found() {
        use resource::GROUP;
        let mut b = binding(GROUP, "g", pattern::LITERAL, "User:alice", op::READ, permission::ALLOW);
        b.host = "10.0.0.2".into();
        let a = acls(vec![b]);
        assert!(!authorize(&on(), &a, &alice(), GROUP, "g", op::READ), "another host");
        assert!(!authorize(&on(), &a, &alice(), GROUP, "other", op::READ));
        let lenient = AuthorizerConfig { allow_if_no_acl: true, ..on() };
        assert!(authorize(&lenient, &a, &alice(), GROUP, "other", op::READ), "no ACL on the resource");
        assert!(!authorize(&lenient, &a, &alice(), GROUP, "g", op::READ), "an ACL exists, none matches");
    }

    #[test]
    fn validation_and_filters() {
        let ok = binding(resource::TOPIC, "t", pattern::LITERAL, "User:a", op::READ, permission::ALLOW);
        assert_eq!(ok.invalid(), None);
        for bad in [
            AclBinding { resource_type: resource::ANY, ..ok.clone() },
            AclBinding { pattern_type: pattern::MATCH, ..ok.clone() },
            AclBinding { principal: "alice".into(), ..ok.clone() },
            AclBinding { operation: op::IDEMPOTENT_WRITE, ..ok.clone() },
            AclBinding { resource_type: resource::CLUSTER, resource_name: "c".into(), ..ok.clone() },
            AclBinding { permission: permission::ANY, ..ok.clone() },
            AclBinding { host: String::new(), ..ok.clone() },
        ] {
            assert!(bad.invalid().is_some(), "{bad:?} should be refused");
        }
        let prefixed = binding(resource::TOPIC, "pay", pattern::PREFIXED, "User:a", op::WRITE, permission::ALLOW);
        let f = |pt: i8, name: Option<&str>| AclFilter {
            resource_type: resource::ANY,
            resource_name: name.map(String::from),
            pattern_type: pt,
            principal: None,
            host: None,
            operation: op::ANY,
            permission: permission::ANY,
        };
        assert!(f(pattern::MATCH, Some("payments")).matches(&prefixed));
        assert!(!f(pattern::LITERAL, Some("payments")).matches(&prefixed));
        assert!(f(pattern::PREFIXED, Some("pay")).matches(&prefixed));
        assert!(f(pattern::ANY, None).matches(&prefixed));
        assert!(!f(pattern::ANY, Some("payments")).matches(&prefixed));
    }

    #[test]
    fn super_users_parse() {
        let c = AuthorizerConfig::parse("acl", "User:admin; User:ops", false).unwrap();
        assert_eq!(c.super_users, vec!["User:admin", "User:ops"]);
        assert!(AuthorizerConfig::parse("acl", "admin", false).is_err());
        assert!(AuthorizerConfig::parse("ranger", "", false).is_err());
        assert!(!AuthorizerConfig::parse("none", "", false).unwrap().enabled);
    }
}
