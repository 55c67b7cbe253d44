//! Which host answers an API call: the pure rule from (service, site,
//! region) to the host name, which is also the `host` the TC3 signature
//! covers (reference §1 and §12).
//!
//! - China site: `<service>.tencentcloudapi.com`, the nearest region.
//! - International site: `<service>.intl.tencentcloudapi.com`.
//! - A region the nearest host does not serve (the isolated financial
//!   regions, `*-fsi`) is called on its own host,
//!   `<service>.<region>.tencentcloudapi.com`, on either site; there the
//!   host and `X-TC-Region` must name the same region.
//!
//! `[api] endpoint` overrides all of this (see `client`): the endpoint's
//! own host is then sent and signed, as the official SDKs do with
//! `HttpProfile(endpoint=…)`.

use crate::model::Service;
pub use tcbackup_signing::service::Site;

/// The domain every regional host ends in, whatever the site.
const REGIONAL_ROOT_DOMAIN: &str = "tencentcloudapi.com";

/// Region name endings whose API only a regional host serves: the
/// financial regions (`ap-shanghai-fsi`, `ap-shenzhen-fsi`, …) are isolated
/// from the nearest-region entry points (reference §1, §12).
pub const REGIONAL_ONLY_SUFFIXES: &[&str] = &["-fsi"];

/// Whether `region`'s API is served only by its own regional host.
pub fn needs_regional_host(region: &str) -> bool {
    REGIONAL_ONLY_SUFFIXES
        .iter()
        .any(|suffix| region.len() > suffix.len() && region.ends_with(suffix))
}

/// The host name a call of `service` in `region` (as sent in `X-TC-Region`)
/// goes to on `site`, without scheme or port.
pub fn api_host(service: Service, site: Site, region: Option<&str>) -> String {
    match region.filter(|region| needs_regional_host(region)) {
        Some(region) => format!("{service}.{region}.{REGIONAL_ROOT_DOMAIN}"),
        None => format!("{service}.{}", site.root_domain()),
    }
}

/// The URL of [`api_host`]: `https://<host>/` (the API's path is always `/`).
pub fn api_url(service: Service, site: Site, region: Option<&str>) -> String {
    format!("https://{}/", api_host(service, site, region))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn china_site_uses_the_nearest_host_for_ordinary_regions() {
        for region in [None, Some("ap-guangzhou"), Some("ap-shanghai"), Some("")] {
            assert_eq!(
                api_host(Service::Redis, Site::China, region),
                "redis.tencentcloudapi.com",
                "{region:?}"
            );
            assert_eq!(
                api_host(Service::Postgres, Site::China, region),
                "postgres.tencentcloudapi.com",
                "{region:?}"
            );
        }
    }

    #[test]
    fn intl_site_uses_the_intl_host_for_ordinary_regions() {
        for region in [None, Some("ap-singapore"), Some("na-siliconvalley")] {
            assert_eq!(
                api_host(Service::Redis, Site::Intl, region),
                "redis.intl.tencentcloudapi.com",
                "{region:?}"
            );
            assert_eq!(
                api_host(Service::Postgres, Site::Intl, region),
                "postgres.intl.tencentcloudapi.com",
                "{region:?}"
            );
        }
    }

    #[test]
    fn financial_regions_get_their_own_host_on_either_site() {
        for site in Site::ALL {
            assert_eq!(
                api_host(Service::Redis, site, Some("ap-shanghai-fsi")),
                "redis.ap-shanghai-fsi.tencentcloudapi.com"
            );
            assert_eq!(
                api_host(Service::Postgres, site, Some("ap-shenzhen-fsi")),
                "postgres.ap-shenzhen-fsi.tencentcloudapi.com"
            );
        }
    }

    #[test]
    fn only_financial_regions_need_a_regional_host() {
        assert!(needs_regional_host("ap-shanghai-fsi"));
        assert!(needs_regional_host("ap-shenzhen-fsi"));
        assert!(needs_regional_host("ap-beijing-fsi"));
        for region in ["ap-guangzhou", "ap-shanghai", "ap-fsi-beijing", "-fsi", ""] {
            assert!(!needs_regional_host(region), "{region:?}");
        }
    }

    #[test]
    fn the_url_is_https_on_path_slash() {
        assert_eq!(
            api_url(Service::Postgres, Site::Intl, None),
            "https://postgres.intl.tencentcloudapi.com/"
        );
        assert_eq!(
            api_url(Service::Redis, Site::China, Some("ap-shenzhen-fsi")),
            "https://redis.ap-shenzhen-fsi.tencentcloudapi.com/"
        );
    }
}
