//! Routing rules shared by every driver: which subscriptions a published message goes to.
//!
//! The runtime applies them on many threads at once against a shared index, the simulator on
//! one thread; both call these functions, so both deliver by the same rules.

use crate::sublist::MatchResult;

/// Picks the member of a queue group that gets a message: a uniformly random start (the
/// driver's random draw), then the first member that is `eligible` (for example not the
/// publisher itself when it asked for no echo). None if no member is eligible.
pub fn pick_queue_member<T>(
    members: &[T],
    random: u32,
    mut eligible: impl FnMut(&T) -> bool,
) -> Option<&T> {
    if members.is_empty() {
        return None;
    }
    let start = (random as usize) % members.len();
    (0..members.len()).map(|i| &members[(start + i) % members.len()]).find(|m| eligible(m))
}

/// Whether a delivery to a subscription owned by `owner` is allowed when `publisher` sent the
/// message: a connection that asked for no echo never gets its own messages back.
pub fn echo_allowed(publisher: u64, publisher_echo: bool, owner: u64) -> bool {
    publisher_echo || publisher != owner
}

/// What a subscription with `UNSUB max` does with one more matching message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    Deliver,
    /// Deliver, and this was the last one: remove the subscription now.
    DeliverAndExpire,
    /// The subscription already had its `max`.
    Skip,
}

/// `n` counts this delivery too (1 for the first); `max` 0 means unlimited.
pub fn count_delivery(n: u64, max: u64) -> Delivery {
    match max {
        0 => Delivery::Deliver,
        m if n < m => Delivery::Deliver,
        m if n == m => Delivery::DeliverAndExpire,
        _ => Delivery::Skip,
    }
}

/// Fans one message out over the subscriptions that match it: every plain subscription, and
/// one member of each queue group (a random start from `random`, then the first `eligible`).
/// `deliver` appends the message for one subscription and says whether it was delivered (a
/// subscription past its `max`, or one whose owner's deny list withholds the subject, is not).
/// Returns how many deliveries were made: none means no responders.
pub fn fan_out<T>(
    matches: &MatchResult<T>,
    mut random: impl FnMut() -> u32,
    mut eligible: impl FnMut(&T) -> bool,
    mut deliver: impl FnMut(&T) -> bool,
) -> usize {
    let mut delivered = 0;
    for sub in &matches.plain {
        if eligible(sub) && deliver(sub) {
            delivered += 1;
        }
    }
    for group in &matches.queues {
        if let Some(sub) = pick_queue_member(&group.members, random(), &mut eligible) {
            if deliver(sub) {
                delivered += 1;
            }
        }
    }
    delivered
}

/// Where a no-responders 503 goes: the requester's own subscriptions that match the reply
/// subject (`matches` is the index's answer for the reply subject).
pub fn no_responders_targets<'a, T>(
    matches: &'a MatchResult<T>,
    requester: u64,
    owner: impl Fn(&T) -> u64 + 'a,
) -> impl Iterator<Item = &'a T> + 'a {
    matches
        .plain
        .iter()
        .chain(matches.queues.iter().flat_map(|q| q.members.iter()))
        .filter(move |s| owner(s) == requester)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sublist::QueueGroup;

    #[test]
    fn picks_first_eligible_from_random_start() {
        let members = [1, 2, 3, 4];
        assert_eq!(pick_queue_member(&members, 2, |_| true), Some(&3));
        assert_eq!(pick_queue_member(&members, 6, |m| *m != 3), Some(&4));
        assert_eq!(pick_queue_member(&members, 0, |_| false), None);
        assert_eq!(pick_queue_member::<u32>(&[], 0, |_| true), None);
    }

    #[test]
    fn every_member_can_be_picked() {
        let members = [10, 20, 30];
        let picked: std::collections::BTreeSet<_> =
            (0..3).filter_map(|r| pick_queue_member(&members, r, |_| true)).collect();
        assert_eq!(picked.len(), 3);
    }

    #[test]
    fn unsub_max_counts_every_delivery() {
        assert_eq!(count_delivery(5, 0), Delivery::Deliver);
        assert_eq!(count_delivery(1, 2), Delivery::Deliver);
        assert_eq!(count_delivery(2, 2), Delivery::DeliverAndExpire);
        assert_eq!(count_delivery(3, 2), Delivery::Skip);
    }

    #[test]
    fn fan_out_reaches_all_plain_and_one_per_group() {
        let matches = MatchResult {
            plain: vec![1, 2],
            queues: vec![
                QueueGroup { name: b"q".to_vec(), members: vec![10, 11] },
                QueueGroup { name: b"r".to_vec(), members: vec![20] },
            ],
        };
        let mut got = Vec::new();
        let n = fan_out(
            &matches,
            || 1,
            |_| true,
            |s| {
                got.push(*s);
                true
            },
        );
        assert_eq!(n, 4);
        assert_eq!(got, vec![1, 2, 11, 20]);
        let mut got = Vec::new();
        let n = fan_out(
            &matches,
            || 0,
            |s| *s != 2 && *s != 20,
            |s| {
                got.push(*s);
                *s != 1
            },
        );
        assert_eq!(n, 1, "ineligible and refused deliveries do not count");
        assert_eq!(got, vec![1, 10]);
    }

    #[test]
    fn no_responders_go_only_to_the_requester() {
        let matches = MatchResult {
            plain: vec![(1, "a"), (2, "b")],
            queues: vec![QueueGroup { name: b"q".to_vec(), members: vec![(1, "c")] }],
        };
        let got: Vec<_> = no_responders_targets(&matches, 1, |s| s.0).collect();
        assert_eq!(got, vec![&(1, "a"), &(1, "c")]);
    }

    #[test]
    fn echo_rule() {
        assert!(echo_allowed(1, true, 1));
        assert!(!echo_allowed(1, false, 1));
        assert!(echo_allowed(1, false, 2));
    }
}
