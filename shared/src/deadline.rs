//! How long an invocation may work: until its deadline, less a margin to answer in.

use std::time::{Duration, Instant, SystemTime};

/// The instant work must stop for an invocation whose deadline is `deadline`.
pub fn of_invocation(deadline: SystemTime, margin: Duration) -> Instant {
    let left = deadline
        .duration_since(SystemTime::now())
        .unwrap_or_default();
    Instant::now() + left.saturating_sub(margin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_margin_comes_off_what_is_left_and_a_past_deadline_is_now() {
        let margin = Duration::from_secs(5);
        let soon = of_invocation(SystemTime::now() + Duration::from_secs(60), margin);
        let left = soon.duration_since(Instant::now());
        assert!(
            left <= Duration::from_secs(55) && left > Duration::from_secs(50),
            "{left:?}"
        );
        assert!(
            of_invocation(SystemTime::now() - Duration::from_secs(1), margin) <= Instant::now()
        );
    }
}
