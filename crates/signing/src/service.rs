//! The two database services tcbackup backs up, named as the API's hosts
//! and signature scopes name them, and the sites (China, international)
//! whose hosts serve them.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The database service an instance belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Service {
    /// TencentDB for Redis (API 2018-04-12, service `redis`).
    Redis,
    /// TencentDB for PostgreSQL (API 2017-03-12, service `postgres`).
    Postgres,
}

impl Service {
    /// The product name used in hosts and in the signature scope.
    pub fn as_str(self) -> &'static str {
        match self {
            Service::Redis => "redis",
            Service::Postgres => "postgres",
        }
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The Tencent Cloud site an account lives on, which names the API's
/// nearest-region hosts: `<service>.tencentcloudapi.com` (China) or
/// `<service>.intl.tencentcloudapi.com` (international). The signature scope
/// names the bare service on both.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Site {
    /// The China site (`tencentcloud.cn` accounts), the default.
    #[default]
    China,
    /// The international site (`tencentcloud.com` accounts).
    Intl,
}

impl Site {
    /// Every site, in the order the config's error message lists them.
    pub const ALL: [Site; 2] = [Site::China, Site::Intl];

    /// The name the config file uses: `china` or `intl`.
    pub fn as_str(self) -> &'static str {
        match self {
            Site::China => "china",
            Site::Intl => "intl",
        }
    }

    /// The site named `name` (exactly as [`Site::as_str`] writes it).
    pub fn from_name(name: &str) -> Option<Site> {
        Site::ALL.into_iter().find(|site| site.as_str() == name)
    }

    /// The domain the nearest-region hosts of this site end in.
    pub fn root_domain(self) -> &'static str {
        match self {
            Site::China => "tencentcloudapi.com",
            Site::Intl => "intl.tencentcloudapi.com",
        }
    }
}

impl fmt::Display for Site {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn site_names_round_trip_and_nothing_else_parses() {
        for site in Site::ALL {
            assert_eq!(Site::from_name(site.as_str()), Some(site));
        }
        for name in ["", "China", "international", "intl ", "cn"] {
            assert_eq!(Site::from_name(name), None, "{name:?}");
        }
        assert_eq!(Site::default(), Site::China);
    }
}
