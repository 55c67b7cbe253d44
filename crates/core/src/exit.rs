//! The exit policy of the contract (design.md §2), in one place: what a
//! run's outcome is called, its process exit code, and which outcome wins
//! when parts of one run end differently. Every mode (`--now`, the daemon,
//! each command, the demo) returns an [`Exit`]; nothing else writes an exit
//! code as a number.

/// How a run ended, from least to most serious.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Exit {
    /// Every due backup is published and verified, or nothing was new.
    #[default]
    Ok,
    /// At least one backup (or one step of a command) failed; the others
    /// completed.
    Failed,
    /// A configuration or usage error; nothing was touched.
    Config,
    /// The API refused the credentials or a permission.
    Auth,
    /// Interrupted by SIGINT or SIGTERM; partial downloads are kept.
    Interrupted,
}

impl Exit {
    /// The process exit code: 0, 1, 2, 3 or 130.
    pub fn code(self) -> u8 {
        match self {
            Exit::Ok => 0,
            Exit::Failed => 1,
            Exit::Config => 2,
            Exit::Auth => 3,
            Exit::Interrupted => 130,
        }
    }

    /// The outcome of a run whose parts ended as `self` and `other`: the
    /// more serious of the two (interrupted, then authentication, then
    /// configuration, then a failed set, then success).
    #[must_use]
    pub fn and(self, other: Exit) -> Exit {
        self.max(other)
    }

    /// Whether the run succeeded.
    pub fn is_ok(self) -> bool {
        self == Exit::Ok
    }
}

impl From<Exit> for std::process::ExitCode {
    fn from(exit: Exit) -> Self {
        std::process::ExitCode::from(exit.code())
    }
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self {
            Exit::Ok => "ok",
            Exit::Failed => "failed",
            Exit::Config => "configuration error",
            Exit::Auth => "authentication failure",
            Exit::Interrupted => "interrupted",
        };
        write!(f, "{name} (exit {})", self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_the_contract() {
        let codes: Vec<u8> = [
            Exit::Ok,
            Exit::Failed,
            Exit::Config,
            Exit::Auth,
            Exit::Interrupted,
        ]
        .map(Exit::code)
        .to_vec();
        assert_eq!(codes, [0, 1, 2, 3, 130]);
    }

    #[test]
    fn the_more_serious_outcome_wins_whatever_the_order() {
        assert_eq!(Exit::Ok.and(Exit::Failed), Exit::Failed);
        assert_eq!(Exit::Auth.and(Exit::Failed), Exit::Auth);
        assert_eq!(Exit::Failed.and(Exit::Config), Exit::Config);
        assert_eq!(Exit::Interrupted.and(Exit::Auth), Exit::Interrupted);
        assert_eq!(Exit::Config.and(Exit::Ok), Exit::Config);
        assert!(Exit::default().is_ok());
    }
}
