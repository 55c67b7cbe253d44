//! The account's backup download policy, as `DescribeBackupDownloadRestriction`
//! of either service reports it (reference §6.5, §7.6), read into one shape,
//! and the question `check-config` asks of it: can downloads over a given
//! network work from this host?
//!
//! Values are compared case-insensitively and an empty one means no
//! restriction: the PostgreSQL service answers `Customize` where its
//! documentation says `CUSTOMIZE`, and sends empty strings.

use std::fmt;

use crate::cloud::client::ApiClient;
use crate::cloud::error::ApiError;
use crate::cloud::{postgres, redis};
use crate::model::{Network, Service};

/// What a download policy allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyKind {
    /// Intranet and internet (`NoLimit`, `NONE`, or nothing).
    Unrestricted,
    /// Only Tencent Cloud's private network (`LimitOnlyIntranet`, `INTRANET`).
    IntranetOnly,
    /// Only the listed VPCs or IPs (`Customize`, `CUSTOMIZE`).
    Customized,
    /// A value this version does not know.
    Unknown,
}

/// One service's download policy in one region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadPolicy {
    /// The service whose policy this is.
    pub service: Service,
    /// What it allows.
    pub kind: PolicyKind,
    /// The value as the API sent it (`LimitType` or `RestrictionType`).
    pub value: String,
}

impl DownloadPolicy {
    /// The policy of a Redis `LimitType`.
    pub fn from_redis(limit_type: &str) -> Self {
        Self::read(Service::Redis, limit_type, "NoLimit", "LimitOnlyIntranet")
    }

    /// The policy of a PostgreSQL `RestrictionType`.
    pub fn from_postgres(restriction_type: &str) -> Self {
        Self::read(Service::Postgres, restriction_type, "NONE", "INTRANET")
    }

    fn read(service: Service, value: &str, open: &str, intranet: &str) -> Self {
        let trimmed = value.trim();
        let kind = if trimmed.is_empty() || trimmed.eq_ignore_ascii_case(open) {
            PolicyKind::Unrestricted
        } else if trimmed.eq_ignore_ascii_case(intranet) {
            PolicyKind::IntranetOnly
        } else if trimmed.eq_ignore_ascii_case("Customize") {
            PolicyKind::Customized
        } else {
            PolicyKind::Unknown
        };
        Self {
            service,
            kind,
            value: value.to_string(),
        }
    }

    /// Whether downloads over `network` are refused whatever the host: an
    /// intranet-only policy refuses the public links (tcbackup sends no
    /// restriction for them, so the account's policy applies).
    pub fn refuses(&self, network: Network) -> bool {
        self.kind == PolicyKind::IntranetOnly && network == Network::Public
    }

    /// The API field the value came from.
    fn field(&self) -> &'static str {
        match self.service {
            Service::Redis => "LimitType",
            Service::Postgres => "RestrictionType",
        }
    }
}

impl fmt::Display for DownloadPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            PolicyKind::Unrestricted => "no restriction",
            PolicyKind::IntranetOnly => "intranet only",
            PolicyKind::Customized => "listed VPCs and IPs only",
            PolicyKind::Unknown => "unknown",
        };
        if self.value.is_empty() {
            write!(f, "{what} (empty {})", self.field())
        } else {
            write!(f, "{what} ({} {})", self.field(), self.value)
        }
    }
}

/// The account's download policy of `service` in `region`: the same
/// action, with an empty request, on both services; only the answer differs.
pub async fn download_policy(
    client: &ApiClient,
    service: Service,
    region: Option<&str>,
) -> Result<DownloadPolicy, ApiError> {
    const ACTION: &str = "DescribeBackupDownloadRestriction";
    let empty = serde_json::Map::new();
    Ok(match service {
        Service::Redis => {
            let answer: redis::DescribeBackupDownloadRestrictionResponse =
                client.call(service, ACTION, region, &empty).await?;
            DownloadPolicy::from_redis(&answer.limit_type)
        }
        Service::Postgres => {
            let answer: postgres::DescribeBackupDownloadRestrictionResponse =
                client.call(service, ACTION, region, &empty).await?;
            DownloadPolicy::from_postgres(&answer.restriction_type)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_read_in_any_case_and_empty_means_unrestricted() {
        let redis = |v: &str| DownloadPolicy::from_redis(v).kind;
        let pg = |v: &str| DownloadPolicy::from_postgres(v).kind;
        assert_eq!(redis("NoLimit"), PolicyKind::Unrestricted);
        assert_eq!(redis(""), PolicyKind::Unrestricted);
        assert_eq!(redis("LimitOnlyIntranet"), PolicyKind::IntranetOnly);
        assert_eq!(redis("limitonlyintranet"), PolicyKind::IntranetOnly);
        assert_eq!(redis("Customize"), PolicyKind::Customized);
        assert_eq!(redis("Other"), PolicyKind::Unknown);
        assert_eq!(pg("NONE"), PolicyKind::Unrestricted);
        assert_eq!(pg("None"), PolicyKind::Unrestricted);
        assert_eq!(pg(" "), PolicyKind::Unrestricted);
        assert_eq!(pg("INTRANET"), PolicyKind::IntranetOnly);
        assert_eq!(pg("Intranet"), PolicyKind::IntranetOnly);
        assert_eq!(pg("Customize"), PolicyKind::Customized);
        assert_eq!(pg("CUSTOMIZE"), PolicyKind::Customized);
    }

    #[test]
    fn only_an_intranet_only_policy_refuses_public_downloads() {
        let intranet = DownloadPolicy::from_postgres("Intranet");
        assert!(intranet.refuses(Network::Public));
        assert!(!intranet.refuses(Network::Intranet));
        for open in [
            DownloadPolicy::from_redis("NoLimit"),
            DownloadPolicy::from_redis("Customize"),
            DownloadPolicy::from_postgres(""),
        ] {
            assert!(!open.refuses(Network::Public), "{open}");
            assert!(!open.refuses(Network::Intranet), "{open}");
        }
    }

    #[test]
    fn shows_the_field_and_value_as_sent() {
        assert_eq!(
            DownloadPolicy::from_redis("LimitOnlyIntranet").to_string(),
            "intranet only (LimitType LimitOnlyIntranet)"
        );
        assert_eq!(
            DownloadPolicy::from_postgres("").to_string(),
            "no restriction (empty RestrictionType)"
        );
        assert_eq!(
            DownloadPolicy::from_postgres("Customize").to_string(),
            "listed VPCs and IPs only (RestrictionType Customize)"
        );
    }
}
