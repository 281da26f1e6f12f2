//! The S3 client Lethe builds for a store, and how an SDK error is put into
//! words.
//!
//! A leaf: both the object store (`objects::s3`) and the audit sink
//! (`audit::s3`) build their client here, so the two agree on region,
//! endpoint, path style, checksums, retries and timeouts, and the audit sink
//! depends on this file without `objects` depending on `audit`.
//!
//! Why the client is built this way (checksums only when required, the SDK's
//! standard retries, connect and per-attempt timeouts) is said in
//! [`super`]'s module doc.

use aws_sdk_s3::Client;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{Region, RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use std::time::Duration;

/// Connect timeout: a store that does not answer fails the rule quickly.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// One attempt of one request (a `DeleteObjects` of 1,000 keys included).
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(60);

/// Requests and attempts the SDK made for one store: every attempt past a
/// request's first is a retry (a 500, a 503 SlowDown, a reset connection, a
/// timed-out attempt), which the run reports instead of hiding.
#[derive(Debug, Default)]
pub(crate) struct Attempts {
    requests: std::sync::atomic::AtomicU64,
    attempts: std::sync::atomic::AtomicU64,
}

impl Attempts {
    /// Attempts past each request's first: the retries the SDK made.
    pub(crate) fn retries(&self) -> u64 {
        use std::sync::atomic::Ordering::Relaxed;
        self.attempts
            .load(Relaxed)
            .saturating_sub(self.requests.load(Relaxed))
    }
}

/// The interceptor that counts [`Attempts`]; it reads, never changes, a request.
#[derive(Debug)]
struct CountAttempts(std::sync::Arc<Attempts>);

impl aws_sdk_s3::config::Intercept for CountAttempts {
    fn name(&self) -> &'static str {
        "lethe-count-attempts"
    }

    fn read_before_execution(
        &self,
        _: &aws_sdk_s3::config::interceptors::BeforeSerializationInterceptorContextRef<'_>,
        _: &mut aws_sdk_s3::config::ConfigBag,
    ) -> Result<(), aws_sdk_s3::error::BoxError> {
        self.0
            .requests
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    fn read_before_attempt(
        &self,
        _: &aws_sdk_s3::config::interceptors::BeforeTransmitInterceptorContextRef<'_>,
        _: &aws_sdk_s3::config::RuntimeComponents,
        _: &mut aws_sdk_s3::config::ConfigBag,
    ) -> Result<(), aws_sdk_s3::error::BoxError> {
        self.0
            .attempts
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }
}

/// The S3 client Lethe uses for a store: region, endpoint, path style,
/// checksums only when required, standard retries, timeouts.
pub(crate) async fn client(
    region: Option<&str>,
    endpoint: Option<&str>,
    path_style: bool,
    max_attempts: u32,
) -> Client {
    counting_client(region, endpoint, path_style, max_attempts, None).await
}

/// [`client`], counting its requests and attempts into `attempts`.
pub(crate) async fn counting_client(
    region: Option<&str>,
    endpoint: Option<&str>,
    path_style: bool,
    max_attempts: u32,
    attempts: Option<std::sync::Arc<Attempts>>,
) -> Client {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .retry_config(RetryConfig::standard().with_max_attempts(max_attempts))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                .build(),
        );
    if let Some(r) = region {
        loader = loader.region(Region::new(r.to_string()));
    }
    let sdk = loader.load().await;
    let mut b = aws_sdk_s3::config::Builder::from(&sdk)
        .force_path_style(path_style)
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
    if let Some(e) = endpoint {
        b = b.endpoint_url(e);
    }
    if let Some(a) = attempts {
        b = b.interceptor(CountAttempts(a));
    }
    Client::from_conf(b.build())
}

/// S3's error code (and HTTP status), or what kept the request from an answer.
pub(crate) fn describe<E>(e: &SdkError<E>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match e {
        SdkError::ServiceError(se) => {
            let status = se.raw().status().as_u16();
            let code = se.err().code().unwrap_or("no error code");
            match se.err().message() {
                Some(m) => format!("{code} (HTTP {status}): {m}"),
                None => format!("{code} (HTTP {status})"),
            }
        }
        SdkError::DispatchFailure(_) => format!("cannot reach the endpoint: {}", chain(e)),
        SdkError::TimeoutError(_) => "no answer before the timeout".into(),
        _ => chain(e),
    }
}

/// `error: cause: cause…`, each once (the SDK repeats a cause in its parent's text).
fn chain(e: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !parts.iter().any(|p| p.contains(&t)) {
            parts.push(t);
        }
        cur = c.source();
    }
    parts.join(": ")
}
