//! The two database services tcbackup backs up, named as the API's hosts
//! and signature scopes name them.

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
