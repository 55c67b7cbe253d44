//! The dry-run table of a [`RetentionPlan`] (`tcbackup prune --dry-run`):
//! one line per set with the action, its times in the policy's zone and
//! every reason.

use std::fmt;

use chrono::{DateTime, Utc};

use super::RetentionPlan;

const TABLE_TIME: &str = "%Y-%m-%d %H:%M:%S";

impl fmt::Display for RetentionPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.entries.is_empty() {
            return writeln!(f, "no published sets");
        }
        let zone = self.time_zone;
        let local = |at: DateTime<Utc>| at.with_timezone(&zone).format(TABLE_TIME).to_string();
        let id_width = self
            .entries
            .iter()
            .map(|entry| entry.id.len())
            .max()
            .unwrap_or(0)
            .max("SET".len());
        let start_title = format!("START (UTC{zone})");
        writeln!(
            f,
            "{:<6}  {:<5}  {:<19}  {:<19}  {:<id_width$}  REASONS",
            "ACTION", "KIND", start_title, "FINISH", "SET"
        )?;
        for entry in &self.entries {
            let reasons = entry
                .reasons
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ");
            writeln!(
                f,
                "{:<6}  {:<5}  {:<19}  {:<19}  {:<id_width$}  {reasons}",
                if entry.keep { "keep" } else { "delete" },
                entry.kind.as_str(),
                local(entry.start),
                entry.finish.map_or_else(|| "-".to_string(), local),
                entry.id,
            )?;
        }
        let kept = self.to_keep().count();
        let deleted = self.to_delete().count();
        writeln!(f, "{kept} kept, {deleted} to delete")
    }
}
