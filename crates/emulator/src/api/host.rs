//! What the `Host` header of an API request says, read the way the real
//! API's front ends route: `<service>.tencentcloudapi.com` (China site,
//! nearest region), `<service>.intl.tencentcloudapi.com` (international
//! site, nearest region) and `<service>.<region>.tencentcloudapi.com` (one
//! region, either site). Any other host is the emulator's own address (an
//! `[api] endpoint` override): the service then comes from the signature
//! scope, and any region is served.
//!
//! The region rules (reference §1, §12): a regional host serves its own
//! region only, and the nearest-region hosts do not serve the isolated
//! financial regions (`*-fsi`), which need their regional host. The real
//! service's error code for either is not documented; `UnsupportedRegion`
//! ("API not in that region", §4.1) stands in.
//!
//! This is the emulator's own reading of hosts, written apart from the
//! client's `endpoint::api_host`, so a client that picks the wrong host is
//! refused here instead of agreeing with itself.

use super::ApiError;
use tcbackup_signing::service::Service;

/// The domain the real API's hosts end in.
const API_DOMAIN: &str = ".tencentcloudapi.com";

/// Which front end a host names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Front {
    /// A nearest-region host (`<service>.tencentcloudapi.com` or
    /// `<service>.intl.tencentcloudapi.com`).
    Nearest,
    /// A regional host, `<service>.<region>.tencentcloudapi.com`.
    Regional(String),
    /// Not a host of the real API's shape: the emulator's own address.
    Other,
}

/// A request's `Host`, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiHost {
    /// The service a `redis.…` / `postgres.…` host names.
    pub(crate) service: Option<Service>,
    pub(crate) front: Front,
}

/// Read a `Host` header value (a port, if any, is ignored).
pub(crate) fn parse(host: &str) -> ApiHost {
    let host = host.trim().to_ascii_lowercase();
    let name = strip_port(&host);
    let (service, rest) = if let Some(rest) = name.strip_prefix("redis.") {
        (Some(Service::Redis), rest)
    } else if let Some(rest) = name.strip_prefix("postgres.") {
        (Some(Service::Postgres), rest)
    } else {
        (None, name)
    };
    let front = match service.and_then(|_| middle(rest)) {
        Some("") | Some("intl") => Front::Nearest,
        Some(label) if is_region_label(label) => Front::Regional(label.to_string()),
        _ => Front::Other,
    };
    ApiHost { service, front }
}

/// `rest` of `<service>.<rest>` without the API domain: `""` for
/// `tencentcloudapi.com`, the label for `<label>.tencentcloudapi.com`.
fn middle(rest: &str) -> Option<&str> {
    if rest == &API_DOMAIN[1..] {
        return Some("");
    }
    rest.strip_suffix(API_DOMAIN)
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        // An IPv6 literal: never an API host name.
        return host;
    }
    host.rsplit_once(':').map_or(host, |(name, _)| name)
}

/// One DNS label of a region's shape (`ap-guangzhou`, `ap-shanghai-fsi`).
fn is_region_label(label: &str) -> bool {
    !label.is_empty()
        && label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Whether `region` is an isolated financial region.
fn is_financial(region: &str) -> bool {
    region.ends_with("-fsi")
}

/// Whether the front end `host` names serves a call for `region` (the
/// `X-TC-Region` sent, if any).
pub(crate) fn check_region(
    host: &str,
    front: &Front,
    region: Option<&str>,
) -> Result<(), ApiError> {
    let refused = |region: &str, why: String| {
        ApiError::new(
            "UnsupportedRegion",
            format!("The region `{region}` is not served by host `{host}`: {why}."),
        )
    };
    match (front, region) {
        (Front::Regional(served), Some(region)) if served != region => Err(refused(
            region,
            format!("a regional host serves its own region, `{served}`, only"),
        )),
        (Front::Nearest, Some(region)) if is_financial(region) => Err(refused(
            region,
            format!("a financial region is reached on its own host, <service>.{region}.tencentcloudapi.com"),
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_of_the_api_shape_name_their_service_and_front() {
        let cases = [
            (
                "redis.tencentcloudapi.com",
                Some(Service::Redis),
                Front::Nearest,
            ),
            (
                "Postgres.intl.tencentcloudapi.com",
                Some(Service::Postgres),
                Front::Nearest,
            ),
            (
                "redis.ap-shanghai-fsi.tencentcloudapi.com:443",
                Some(Service::Redis),
                Front::Regional("ap-shanghai-fsi".to_string()),
            ),
            ("redis.example", Some(Service::Redis), Front::Other),
            (
                "redis.a.b.tencentcloudapi.com",
                Some(Service::Redis),
                Front::Other,
            ),
            ("cvm.tencentcloudapi.com", None, Front::Other),
            ("127.0.0.1:9000", None, Front::Other),
            ("[::1]:9000", None, Front::Other),
        ];
        for (host, service, front) in cases {
            assert_eq!(parse(host), ApiHost { service, front }, "{host}");
        }
    }

    #[test]
    fn regional_hosts_serve_their_region_and_nearest_hosts_no_financial_one() {
        let regional = Front::Regional("ap-shanghai-fsi".to_string());
        let h = "redis.ap-shanghai-fsi.tencentcloudapi.com";
        assert!(check_region(h, &regional, Some("ap-shanghai-fsi")).is_ok());
        assert!(check_region(h, &regional, None).is_ok());
        let err = check_region(h, &regional, Some("ap-guangzhou")).unwrap_err();
        assert_eq!(err.code, "UnsupportedRegion");
        let near = "redis.tencentcloudapi.com";
        assert!(check_region(near, &Front::Nearest, Some("ap-guangzhou")).is_ok());
        let err = check_region(near, &Front::Nearest, Some("ap-shenzhen-fsi")).unwrap_err();
        assert_eq!(err.code, "UnsupportedRegion");
        assert!(
            err.message.contains("redis.tencentcloudapi.com"),
            "{}",
            err.message
        );
        // The emulator's own address stands for an endpoint override: any region.
        assert!(check_region("127.0.0.1:9", &Front::Other, Some("ap-shenzhen-fsi")).is_ok());
    }
}
