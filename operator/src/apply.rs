//! Server-side apply of children and of status.
//!
//! Every child is sent whole, with `force`, under [`FIELD_MANAGER`]: the API server keeps
//! fields other managers own (an HPA's, a user's `kubectl annotate`) and drops fields the
//! operator stopped setting.
//!
//! A reconcile that finds nothing to change must not write at all (no PATCH storms from
//! periodic resyncs, quiet audit logs): each child carries the hash of what the operator last
//! applied ([`APPLIED_HASH`]), and [`apply`] reads the child first and skips the apply when
//! the hash matches. The cost: a field the operator owns, edited by hand, is put back only at
//! the next change of the desired object (the same trade Argo CD's self-heal makes in
//! reverse). Status is compared the same way before it is written.

use k8s_openapi::NamespaceResourceScope;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;

use sha2::{Digest, Sha256};

use crate::{Error, Result, FIELD_MANAGER};

/// Annotation holding the hash of the object as the operator last applied it.
pub const APPLIED_HASH: &str = "automq.rs/applied-hash";

/// Hex SHA-256 of a value's JSON (keys are sorted by serde_json's map, so it is stable).
pub fn hash_of<T: Serialize>(value: &T) -> Result<String> {
    let json = serde_json::to_vec(value).map_err(|source| Error::Serialize { what: "object", source })?;
    Ok(Sha256::digest(&json).iter().map(|b| format!("{b:02x}")).collect())
}

/// Applies `obj` (which must carry its name and namespace) unless the live object already
/// carries its hash; returns the live object.
pub async fn apply<K>(client: &Client, obj: &K) -> Result<K>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Serialize
        + DeserializeOwned
        + Clone
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), &obj.namespace().unwrap_or_default());
    let live = api.get_opt(&obj.name_any()).await?;
    apply_over(client, obj, live.as_ref()).await
}

/// [`apply`] when the caller already read the live object (`None`: it does not exist).
pub async fn apply_over<K>(client: &Client, obj: &K, live: Option<&K>) -> Result<K>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Serialize
        + DeserializeOwned
        + Clone
        + std::fmt::Debug,
{
    let mut obj = obj.clone();
    let hash = hash_of(&obj)?;
    if let Some(live) = live {
        if live.annotations().get(APPLIED_HASH) == Some(&hash) {
            return Ok(live.clone());
        }
    }
    obj.annotations_mut().insert(APPLIED_HASH.to_string(), hash);
    let api: Api<K> = Api::namespaced(client.clone(), &obj.namespace().unwrap_or_default());
    let params = PatchParams::apply(FIELD_MANAGER).force();
    Ok(api.patch(&obj.name_any(), &params, &Patch::Apply(&obj)).await?)
}

/// Applies `status` to resource `K` named `name` (the status subresource).
pub async fn apply_status<K, S>(client: &Client, namespace: &str, name: &str, status: &S) -> Result<()>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
    S: Serialize,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let body = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    let params = PatchParams::apply(FIELD_MANAGER).force();
    api.patch_status(name, &params, &Patch::Apply(&body)).await?;
    Ok(())
}
