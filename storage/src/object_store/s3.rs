//! S3 backend (aws-sdk-s3): AWS or any S3-compatible endpoint.
//!
//! URL: `s3://bucket[/prefix]?endpoint=http://host:port&region=us-east-1&path_style=true`.
//! `endpoint` defaults to AWS; `region` to `AWS_REGION` or `us-east-1`; `path_style` to true
//! when an endpoint is given (MinIO, SeaweedFS, Ceph) and false otherwise. Credentials are
//! static when given in [`super::StoreOptions`], otherwise the AWS default chain (environment,
//! profile, web identity / IRSA, ECS and EC2 metadata).
//!
//! Retries are left to [`super::RetryStore`] (the SDK's are disabled) so that every attempt is
//! visible in our metrics and the conditional-create rules live in one place.

use std::ops::Range;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::Client;
use aws_smithy_types::retry::RetryConfig as SdkRetryConfig;
use aws_smithy_types::timeout::TimeoutConfig;
use bytes::Bytes;

use super::{validate_key, ObjectMeta, ObjectStore, S3Credentials};
use crate::{Error, Result};

#[derive(Debug, Clone)]
pub struct S3Config {
    pub bucket: String,
    /// Key prefix inside the bucket, without leading or trailing slash; may be empty.
    pub prefix: String,
    pub endpoint: Option<String>,
    pub region: String,
    pub path_style: bool,
    pub credentials: Option<S3Credentials>,
    /// Upper bound on one request attempt, connect included.
    pub operation_timeout: Duration,
}

impl S3Config {
    pub(super) fn from_url(url: &url::Url, credentials: Option<S3Credentials>) -> Result<Self, String> {
        let bucket = url.host_str().filter(|b| !b.is_empty()).ok_or("missing bucket name (s3://bucket/prefix)")?;
        let mut endpoint = None;
        let mut region = None;
        let mut path_style = None;
        for (k, v) in url.query_pairs() {
            match k.as_ref() {
                "endpoint" => endpoint = Some(v.into_owned()),
                "region" => region = Some(v.into_owned()),
                "path_style" | "force_path_style" => {
                    path_style =
                        Some(v.parse::<bool>().map_err(|_| format!("path_style must be true or false, got {v:?}"))?)
                }
                other => return Err(format!("unknown parameter {other:?}; expected endpoint, region or path_style")),
            }
        }
        if let Some(e) = &endpoint {
            url::Url::parse(e).map_err(|err| format!("endpoint {e:?} is not a URL: {err}"))?;
        }
        let region = region
            .or_else(|| std::env::var("AWS_REGION").ok())
            .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
            .unwrap_or_else(|| "us-east-1".to_string());
        Ok(S3Config {
            bucket: bucket.to_string(),
            prefix: url.path().trim_matches('/').to_string(),
            path_style: path_style.unwrap_or(endpoint.is_some()),
            endpoint,
            region,
            credentials,
            operation_timeout: Duration::from_secs(30),
        })
    }
}

#[derive(Debug, Clone)]
pub struct S3Store {
    client: Client,
    bucket: String,
    prefix: String,
}

impl S3Store {
    pub async fn connect(config: S3Config) -> Self {
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(5))
            .operation_attempt_timeout(config.operation_timeout)
            .build();
        let mut builder = match &config.credentials {
            Some(c) => {
                aws_sdk_s3::config::Builder::new().behavior_version(BehaviorVersion::latest()).credentials_provider(
                    Credentials::new(&c.access_key_id, &c.secret_access_key, None, None, "automq-static"),
                )
            }
            None => {
                let shared = aws_config::defaults(BehaviorVersion::latest())
                    .region(Region::new(config.region.clone()))
                    .load()
                    .await;
                aws_sdk_s3::config::Builder::from(&shared)
            }
        };
        builder = builder
            .region(Region::new(config.region.clone()))
            .force_path_style(config.path_style)
            .retry_config(SdkRetryConfig::disabled())
            .timeout_config(timeouts)
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        if let Some(endpoint) = &config.endpoint {
            builder = builder.endpoint_url(endpoint);
        }
        S3Store { client: Client::from_conf(builder.build()), bucket: config.bucket, prefix: config.prefix }
    }

    fn full_key(&self, key: &str) -> Result<String> {
        validate_key(key)?;
        Ok(if self.prefix.is_empty() { key.to_string() } else { format!("{}/{key}", self.prefix) })
    }

    fn strip(&self, full: &str) -> Option<String> {
        if self.prefix.is_empty() {
            Some(full.to_string())
        } else {
            full.strip_prefix(&self.prefix).and_then(|k| k.strip_prefix('/')).map(str::to_string)
        }
    }

    /// Creates the bucket if it does not exist (tests and first-run convenience).
    pub async fn ensure_bucket(&self) -> Result<()> {
        match self.client.create_bucket().bucket(&self.bucket).send().await {
            Ok(_) => Ok(()),
            Err(e) if matches!(e.code(), Some("BucketAlreadyOwnedByYou" | "BucketAlreadyExists")) => Ok(()),
            Err(e) => Err(map_err("create_bucket", &self.bucket, e)),
        }
    }
}

/// Maps an SDK error: 404 -> NotFound, 412 -> AlreadyExists, 409/429/5xx and transport
/// failures -> retryable, other 4xx -> permanent.
fn map_err<E>(op: &'static str, key: &str, err: SdkError<E, aws_smithy_runtime_api_response::HttpResponse>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let message = DisplayErrorContext(&err).to_string();
    let retryable = match &err {
        SdkError::ServiceError(ctx) => match ctx.raw().status().as_u16() {
            404 => return Error::NotFound { key: key.to_string() },
            412 => return Error::AlreadyExists { key: key.to_string() },
            // 409 ConditionalRequestConflict: a concurrent conditional write is in flight.
            409 | 429 | 500..=599 => true,
            _ => false,
        },
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => true,
        _ => false,
    };
    Error::ObjectStore { op, key: key.to_string(), retryable, message }
}

/// The SDK's raw HTTP response type, named once.
mod aws_smithy_runtime_api_response {
    pub(super) type HttpResponse = aws_sdk_s3::config::http::HttpResponse;
}

#[async_trait]
impl ObjectStore for S3Store {
    async fn put(&self, key: &str, data: Bytes) -> Result<()> {
        let full = self.full_key(key)?;
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(&full)
            .body(ByteStream::from(data))
            .send()
            .await
            .map_err(|e| map_err("put", key, e))?;
        Ok(())
    }

    async fn put_if_absent(&self, key: &str, data: Bytes) -> Result<()> {
        let full = self.full_key(key)?;
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(&full)
            .if_none_match("*")
            .body(ByteStream::from(data))
            .send()
            .await
            .map_err(|e| map_err("put_if_absent", key, e))?;
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Bytes> {
        let full = self.full_key(key)?;
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&full)
            .send()
            .await
            .map_err(|e| map_err("get", key, e))?;
        read_body(key, out.body).await
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
        if range.end <= range.start {
            return Ok(Bytes::new());
        }
        let full = self.full_key(key)?;
        let header = format!("bytes={}-{}", range.start, range.end - 1);
        match self.client.get_object().bucket(&self.bucket).key(&full).range(header).send().await {
            Ok(out) => read_body(key, out.body).await,
            Err(SdkError::ServiceError(ctx)) if ctx.raw().status().as_u16() == 416 => Ok(Bytes::new()),
            Err(e) => Err(map_err("get_range", key, e)),
        }
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>> {
        let full = self.full_key(key)?;
        match self.client.head_object().bucket(&self.bucket).key(&full).send().await {
            Ok(out) => {
                Ok(Some(ObjectMeta { key: key.to_string(), size: out.content_length().unwrap_or(0).max(0) as u64 }))
            }
            Err(e) => match map_err("head", key, e) {
                Error::NotFound { .. } => Ok(None),
                other => Err(other),
            },
        }
    }

    async fn delete(&self, key: &str) -> Result<()> {
        let full = self.full_key(key)?;
        match self.client.delete_object().bucket(&self.bucket).key(&full).send().await {
            Ok(_) => Ok(()),
            Err(e) => match map_err("delete", key, e) {
                Error::NotFound { .. } => Ok(()),
                other => Err(other),
            },
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        let full_prefix = if self.prefix.is_empty() { prefix.to_string() } else { format!("{}/{prefix}", self.prefix) };
        let mut pages = self.client.list_objects_v2().bucket(&self.bucket).prefix(&full_prefix).into_paginator().send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| map_err("list", prefix, e))?;
            for object in page.contents() {
                let Some(key) = object.key().and_then(|k| self.strip(k)) else { continue };
                out.push(ObjectMeta { key, size: object.size().unwrap_or(0).max(0) as u64 });
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }
}

async fn read_body(key: &str, body: ByteStream) -> Result<Bytes> {
    body.collect().await.map(|b| b.into_bytes()).map_err(|e| Error::ObjectStore {
        op: "read_body",
        key: key.to_string(),
        retryable: true,
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_with_defaults() {
        let u = url::Url::parse("s3://bucket/some/prefix/?endpoint=http://127.0.0.1:9000&region=eu-west-1").unwrap();
        let c = S3Config::from_url(&u, None).unwrap();
        assert_eq!((c.bucket.as_str(), c.prefix.as_str(), c.region.as_str()), ("bucket", "some/prefix", "eu-west-1"));
        assert!(c.path_style, "an explicit endpoint defaults to path-style addressing");
        let u = url::Url::parse("s3://bucket?path_style=false&endpoint=http://x:1").unwrap();
        assert!(!S3Config::from_url(&u, None).unwrap().path_style);
        let u = url::Url::parse("s3://bucket?bogus=1").unwrap();
        assert!(S3Config::from_url(&u, None).unwrap_err().contains("bogus"));
        let u = url::Url::parse("s3:///nobucket").unwrap();
        assert!(S3Config::from_url(&u, None).is_err());
    }

    #[test]
    fn secrets_are_not_printed() {
        let c = S3Credentials { access_key_id: "AKIA".into(), secret_access_key: "hunter2".into() };
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
