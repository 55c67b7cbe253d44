//! Which remote backups are due, decided in rounds so that a download that
//! fails never costs the sets the published state needs.
//!
//! The first round judges every candidate together with the published sets,
//! as if every download would succeed: on a first run with `keep_last = 2`
//! only the two newest backups are fetched, not seven of which five would be
//! deleted at once. A candidate that then fails drops out, and the next
//! round judges the candidates not yet tried again against what was really
//! published plus the candidates still in the running:
//!
//! - a Redis set or base backup that retention would keep in place of the
//!   failed one (the next older one with `keep_last`) becomes due;
//! - log backups are judged against the base backups that were really
//!   published (or are still about to be tried), so a failed newer base no
//!   longer hides the logs that follow the older base the user still has.
//!
//! Rounds go on until one has nothing due. Each candidate is tried at most
//! once, so a cycle never does more work than fetching every candidate.
//! Nothing here does I/O; the caller fetches and reports back.

use chrono::{DateTime, Utc};

use super::{would_keep_each, Policy, SetInfo};

/// The rounds of "due" for one instance in one cycle. Candidates are named
/// by their index in the list given to [`DueRounds::new`].
#[derive(Debug, Clone)]
pub struct DueRounds {
    candidates: Vec<SetInfo>,
    /// What is published: the sets on disk before the cycle and the
    /// candidates published since.
    published: Vec<SetInfo>,
    /// Per candidate: not yet tried.
    untried: Vec<bool>,
    policy: Policy,
    now: DateTime<Utc>,
}

impl DueRounds {
    /// Rounds over `candidates` (remote backups not published yet) next to
    /// the `published` sets of the same instance.
    pub fn new(
        candidates: Vec<SetInfo>,
        published: Vec<SetInfo>,
        policy: Policy,
        now: DateTime<Utc>,
    ) -> Self {
        let untried = vec![true; candidates.len()];
        Self {
            candidates,
            published,
            untried,
            policy,
            now,
        }
    }

    /// The candidates to fetch next, by index: those not yet tried that
    /// retention would keep next to what is published and the other
    /// candidates not yet tried. They count as tried from now on; report
    /// each success with [`DueRounds::published`] before asking again. Empty
    /// when nothing more is due.
    pub fn next_round(&mut self) -> Vec<usize> {
        let pending: Vec<usize> = self.untried_indices().collect();
        let infos: Vec<SetInfo> = pending
            .iter()
            .map(|&index| self.candidates[index].clone())
            .collect();
        let keep = would_keep_each(&infos, &self.published, &self.policy, self.now);
        let due: Vec<usize> = pending
            .into_iter()
            .zip(keep)
            .filter_map(|(index, keep)| keep.then_some(index))
            .collect();
        for &index in &due {
            self.untried[index] = false;
        }
        due
    }

    /// Candidate `index` was published.
    pub fn published(&mut self, index: usize) {
        if let Some(set) = self.candidates.get(index) {
            self.published.push(set.clone());
        }
    }

    /// The candidates never tried: once [`DueRounds::next_round`] is empty,
    /// those retention would not keep.
    pub fn untried(&self) -> Vec<usize> {
        self.untried_indices().collect()
    }

    fn untried_indices(&self) -> impl Iterator<Item = usize> + '_ {
        self.untried
            .iter()
            .enumerate()
            .filter_map(|(index, &untried)| untried.then_some(index))
    }
}
