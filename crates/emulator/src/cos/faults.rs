//! Switchable faults of the fake COS server: which ones exist, which requests
//! they apply to, and how many times they still fire.

use super::ObjectBody;

/// A misbehaviour the fake COS server can be told to show.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Close the connection after this many body bytes of a GET response,
    /// before `Content-Length` is reached.
    CutAfter(u64),
    /// Answer any GET or HEAD with this 5xx status and an XML error body
    /// (503 gives `ServiceUnavailable`, anything else `InternalError`; values
    /// outside 500..=599 are sent as 500).
    ServerError(u16),
    /// Answer a GET or HEAD with a valid single `Range` with 200 and the whole object.
    IgnoreRange,
    /// Cap a GET response at this many bytes per second.
    Slow(u64),
    /// Send the headers and this many body bytes of a GET response, then
    /// nothing until `CosStore::release_stalls` or until the client gives up.
    StallAfter(u64),
    /// Once this many body bytes of a GET response went out, replace the
    /// object with `body` (new ETag and Last-Modified). The response itself
    /// goes on with the old content; the next request sees the new one.
    ReplaceAfter {
        /// Bytes of the response sent before the object is replaced.
        after_bytes: u64,
        /// The new content.
        body: ObjectBody,
    },
    /// Answer any GET or HEAD with 403 `AccessDenied`, as a stand-in for a
    /// download restricted to the intranet.
    Deny,
}

/// Which requests a fault applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultTarget {
    /// Requests for any key.
    AnyKey,
    /// Requests for this key (without leading `/`).
    Key(String),
}

impl FaultTarget {
    fn matches(&self, key: &str) -> bool {
        match self {
            FaultTarget::AnyKey => true,
            FaultTarget::Key(k) => k == key,
        }
    }
}

/// How many times a fault fires before it is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repeat {
    /// The next `n` requests it applies to.
    Times(u32),
    /// Until removed.
    Always,
}

/// The handle of an installed fault, to remove it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FaultId(u64);

#[derive(Debug)]
struct Entry {
    id: FaultId,
    target: FaultTarget,
    fault: Fault,
    remaining: Option<u32>,
}

/// What a response must do to its body, gathered from the faults that fired.
#[derive(Debug, Default)]
pub(crate) struct BodyPlan {
    pub(crate) cut_after: Option<u64>,
    pub(crate) stall_after: Option<u64>,
    pub(crate) rate: Option<u64>,
    pub(crate) replace: Option<(u64, ObjectBody)>,
}

/// A status answer decided by a fault before anything else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StatusFault {
    Deny,
    ServerError(u16),
}

/// The installed faults, in installation order.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    next_id: u64,
    entries: Vec<Entry>,
}

impl Faults {
    pub(crate) fn add(&mut self, target: FaultTarget, fault: Fault, repeat: Repeat) -> FaultId {
        self.next_id += 1;
        let id = FaultId(self.next_id);
        let remaining = match repeat {
            Repeat::Times(0) => return id,
            Repeat::Times(n) => Some(n),
            Repeat::Always => None,
        };
        self.entries.push(Entry {
            id,
            target,
            fault,
            remaining,
        });
        id
    }

    pub(crate) fn remove(&mut self, id: FaultId) -> bool {
        let before = self.entries.len();
        self.entries.retain(|e| e.id != id);
        self.entries.len() != before
    }

    pub(crate) fn clear(&mut self) {
        self.entries.clear();
    }

    /// Faults still installed.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Fire the oldest fault for `key` that `pick` selects, counting it down.
    fn take<T>(&mut self, key: &str, pick: impl Fn(&Fault) -> Option<T>) -> Option<T> {
        let idx = self
            .entries
            .iter()
            .position(|e| e.target.matches(key) && pick(&e.fault).is_some())?;
        let value = pick(&self.entries[idx].fault);
        let entry = &mut self.entries[idx];
        if let Some(n) = entry.remaining.as_mut() {
            *n -= 1;
            if *n == 0 {
                self.entries.remove(idx);
            }
        }
        value
    }

    pub(crate) fn take_status(&mut self, key: &str) -> Option<StatusFault> {
        self.take(key, |f| match f {
            Fault::Deny => Some(StatusFault::Deny),
            Fault::ServerError(code) => Some(StatusFault::ServerError(*code)),
            _ => None,
        })
    }

    pub(crate) fn take_ignore_range(&mut self, key: &str) -> bool {
        self.take(key, |f| matches!(f, Fault::IgnoreRange).then_some(()))
            .is_some()
    }

    pub(crate) fn take_body(&mut self, key: &str) -> BodyPlan {
        BodyPlan {
            cut_after: self.take(key, |f| match f {
                Fault::CutAfter(n) => Some(*n),
                _ => None,
            }),
            stall_after: self.take(key, |f| match f {
                Fault::StallAfter(n) => Some(*n),
                _ => None,
            }),
            rate: self.take(key, |f| match f {
                Fault::Slow(n) => Some(*n),
                _ => None,
            }),
            replace: self.take(key, |f| match f {
                Fault::ReplaceAfter { after_bytes, body } => Some((*after_bytes, body.clone())),
                _ => None,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counted_faults_fire_then_vanish_and_targets_filter() {
        let mut faults = Faults::default();
        faults.add(FaultTarget::Key("a".into()), Fault::Deny, Repeat::Times(2));
        faults.add(
            FaultTarget::AnyKey,
            Fault::ServerError(503),
            Repeat::Times(1),
        );
        assert_eq!(faults.take_status("b"), Some(StatusFault::ServerError(503)));
        assert_eq!(faults.take_status("b"), None);
        assert_eq!(faults.take_status("a"), Some(StatusFault::Deny));
        assert_eq!(faults.take_status("a"), Some(StatusFault::Deny));
        assert_eq!(faults.take_status("a"), None);
        assert_eq!(faults.len(), 0);
    }

    #[test]
    fn body_faults_combine_and_always_stays() {
        let mut faults = Faults::default();
        let id = faults.add(FaultTarget::AnyKey, Fault::Slow(1000), Repeat::Always);
        faults.add(FaultTarget::AnyKey, Fault::CutAfter(5), Repeat::Times(1));
        faults.add(FaultTarget::AnyKey, Fault::IgnoreRange, Repeat::Times(0));
        assert!(
            !faults.take_ignore_range("k"),
            "zero times installs nothing"
        );
        let plan = faults.take_body("k");
        assert_eq!((plan.cut_after, plan.rate), (Some(5), Some(1000)));
        let plan = faults.take_body("k");
        assert_eq!((plan.cut_after, plan.rate), (None, Some(1000)));
        assert!(faults.remove(id));
        assert_eq!(faults.take_body("k").rate, None);
        assert_eq!(
            faults.take_status("k"),
            None,
            "body faults are not status faults"
        );
    }
}
