//! Routing rules shared by every driver: which subscriptions a published message goes to.
//!
//! The runtime applies them on many threads at once against a shared index, the simulator on
//! one thread; both call these functions, so both deliver by the same rules.

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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn echo_rule() {
        assert!(echo_allowed(1, true, 1));
        assert!(!echo_allowed(1, false, 1));
        assert!(echo_allowed(1, false, 2));
    }
}
