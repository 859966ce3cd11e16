//! Retry, give-up and delay-warning decisions: pure functions of the
//! envelope, the `[delivery]` configuration and the current time (Unix
//! seconds), so that every rule is tested without clocks or files.

use postamt_config::Delivery;
use postamt_spool::{Envelope, RecipientStatus};
use std::time::Duration;

/// Whole seconds of `d`, rounded up, saturating.
fn secs_ceil(d: Duration) -> i64 {
    let s = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    i64::try_from(s).unwrap_or(i64::MAX)
}

/// Seconds since the message arrived (never negative).
pub fn age(env: &Envelope, now: i64) -> i64 {
    now.saturating_sub(env.created_at).max(0)
}

/// When to try again after attempt number `attempts` (1-based): the retry
/// schedule, at least one second later (sub-second test schedules must not
/// turn into a busy loop).
pub fn next_attempt_at(attempts: u32, now: i64, cfg: &Delivery) -> i64 {
    now.saturating_add(secs_ceil(cfg.retry_delay(attempts)).max(1))
}

/// Whether temporary failures have lasted long enough to become permanent.
pub fn should_give_up(env: &Envelope, now: i64, cfg: &Delivery) -> bool {
    age(env, now) >= secs_ceil(cfg.give_up_after.get())
}

/// Until when the message will be retried.
pub fn retry_until(env: &Envelope, cfg: &Delivery) -> i64 {
    env.created_at
        .saturating_add(secs_ceil(cfg.give_up_after.get()))
}

/// Whether a delay warning is due now: some recipient still pending, the
/// message older than `delay_warning_after` (zero turns warnings off, as in
/// Postfix), none sent yet, and a sender to tell (never `<>`).
pub fn should_warn_delay(env: &Envelope, now: i64, cfg: &Delivery) -> bool {
    let after = cfg.delay_warning_after.get();
    !env.delay_warned
        && !env.mail_from.is_empty()
        && !after.is_zero()
        && env
            .recipients
            .iter()
            .any(|r| r.status == RecipientStatus::Pending)
        && age(env, now) >= secs_ceil(after)
}

/// The `last_error` of a recipient given up on: status 5.4.7 and the last
/// temporary error's text.
pub fn give_up_line(last_temporary: &str, env: &Envelope, now: i64) -> String {
    format!(
        "5.4.7 delivery time expired after {} ({} attempts); last error: {}",
        human_age(age(env, now)),
        env.attempts.saturating_add(1),
        last_temporary
    )
}

/// "3 days", "5 hours", "12 minutes", "40 seconds".
pub fn human_age(secs: i64) -> String {
    let (n, unit) = if secs >= 86400 {
        (secs / 86400, "day")
    } else if secs >= 3600 {
        (secs / 3600, "hour")
    } else if secs >= 60 {
        (secs / 60, "minute")
    } else {
        (secs, "second")
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{config, envelope};
    use postamt_config::HumanDuration;

    #[test]
    fn retries_follow_the_schedule_then_repeat_the_last() {
        let cfg = config().delivery;
        let now = 1_000_000;
        let delays: Vec<i64> = (1..=7)
            .map(|n| next_attempt_at(n, now, &cfg) - now)
            .collect();
        assert_eq!(delays, [60, 300, 900, 3600, 14400, 14400, 14400]);
    }

    #[test]
    fn sub_second_schedules_still_wait_a_second() {
        let mut cfg = config().delivery;
        cfg.retry_intervals = vec!["250ms".parse().unwrap()];
        assert_eq!(next_attempt_at(1, 10, &cfg), 11);
        cfg.retry_intervals = vec!["1500ms".parse().unwrap()];
        assert_eq!(next_attempt_at(1, 10, &cfg), 12);
    }

    #[test]
    fn gives_up_exactly_at_the_limit() {
        let cfg = config().delivery;
        let env = envelope("a1", "s@x.org", &["bob@example.org"], 0);
        assert!(!should_give_up(&env, 5 * 86400 - 1, &cfg));
        assert!(should_give_up(&env, 5 * 86400, &cfg));
        assert_eq!(retry_until(&env, &cfg), 5 * 86400);
    }

    #[test]
    fn delay_warning_rules() {
        let cfg = config().delivery;
        let mut env = envelope("a1", "s@x.org", &["bob@example.org"], 0);
        assert!(!should_warn_delay(&env, 4 * 3600 - 1, &cfg));
        assert!(should_warn_delay(&env, 4 * 3600, &cfg));
        env.delay_warned = true;
        assert!(!should_warn_delay(&env, 4 * 3600, &cfg));
        env.delay_warned = false;
        env.mail_from.clear();
        assert!(!should_warn_delay(&env, 4 * 3600, &cfg), "never to <>");
        env.mail_from = "s@x.org".into();
        env.recipients[0].status = RecipientStatus::Delivered;
        assert!(!should_warn_delay(&env, 4 * 3600, &cfg), "nothing pending");
        env.recipients[0].status = RecipientStatus::Pending;
        let mut off = cfg.clone();
        off.delay_warning_after = HumanDuration::secs(0);
        assert!(!should_warn_delay(&env, 10 * 86400, &off));
    }

    #[test]
    fn give_up_line_keeps_the_last_error() {
        let mut env = envelope("a1", "s@x.org", &["bob@example.org"], 0);
        env.attempts = 41;
        let l = give_up_line("4.2.0 mailbox I/O error: denied", &env, 5 * 86400);
        assert!(l.starts_with("5.4.7 "), "{l}");
        assert!(l.contains("5 days"), "{l}");
        assert!(l.contains("42 attempts"), "{l}");
        assert!(
            l.ends_with("last error: 4.2.0 mailbox I/O error: denied"),
            "{l}"
        );
        assert_eq!(human_age(1), "1 second");
        assert_eq!(human_age(7200), "2 hours");
    }
}
