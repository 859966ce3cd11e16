//! Per-user mail rules for admins: auto-reply (vacation) and forwarding.
//!
//! Auto-reply dates are calendar days in UTC: `from` starts at 00:00 of its
//! day, `until` includes its whole day (the reply stops at 00:00 of the day
//! after). Forward addresses may be bare names (the primary domain); a
//! forward that would loop (`alice` to `bob`, `bob` back to `alice`) is
//! refused and the previous forward kept.

use crate::{Admin, OpsError};
use chrono::NaiveDate;
use postamt_directory::{Autoreply, AutoreplyRule, Forward, ResolveError};

/// Where an auto-reply stands at a moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AutoreplyState {
    /// Answering now.
    Active,
    /// Starts later.
    Scheduled,
    /// Its last day has passed; it answers no more.
    Ended,
}

impl AutoreplyState {
    pub fn of(a: &Autoreply, now: i64) -> AutoreplyState {
        if a.is_active(now) {
            AutoreplyState::Active
        } else if a.has_ended(now) {
            AutoreplyState::Ended
        } else {
            AutoreplyState::Scheduled
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AutoreplyState::Active => "active",
            AutoreplyState::Scheduled => "scheduled",
            AutoreplyState::Ended => "ended",
        }
    }
}

/// Unix seconds of 00:00 UTC on `day`.
fn day_start(day: NaiveDate) -> i64 {
    day.and_hms_opt(0, 0, 0)
        .map(|t| t.and_utc().timestamp())
        .unwrap_or(i64::MAX)
}

/// The active window of `from`..=`until` (whole UTC days) as unix seconds:
/// start inclusive, end exclusive. Refuses `from` after `until`, and an
/// `until` day that is already over at `now`.
pub fn autoreply_window(
    from: Option<NaiveDate>,
    until: Option<NaiveDate>,
    now: i64,
) -> Result<(Option<i64>, Option<i64>), OpsError> {
    if let (Some(f), Some(u)) = (from, until)
        && f > u
    {
        return Err(OpsError::Invalid(format!(
            "the start date {f} is after the end date {u}"
        )));
    }
    let starts = from.map(day_start);
    let ends = match until {
        None => None,
        Some(u) => {
            let next = u
                .succ_opt()
                .ok_or_else(|| OpsError::Invalid(format!("the end date {u} is out of range")))?;
            Some(day_start(next))
        }
    };
    if let (Some(u), Some(e)) = (until, ends)
        && e <= now
    {
        return Err(OpsError::Invalid(format!(
            "the end date {u} has already passed"
        )));
    }
    Ok((starts, ends))
}

impl Admin {
    /// Sets (or replaces) a user's auto-reply; see the module documentation
    /// for the dates.
    pub fn autoreply_set(
        &self,
        user: &str,
        subject: &str,
        body: &str,
        from: Option<NaiveDate>,
        until: Option<NaiveDate>,
    ) -> Result<Autoreply, OpsError> {
        let now = chrono::Utc::now().timestamp();
        let (starts_at, ends_at) = autoreply_window(from, until, now)?;
        let rule = AutoreplyRule {
            subject: subject.to_owned(),
            body: body.to_owned(),
            starts_at,
            ends_at,
        };
        let a = self.directory.set_autoreply(user, &rule)?;
        tracing::info!(user = %a.user, starts_at = ?a.starts_at, ends_at = ?a.ends_at, "auto-reply set by admin");
        Ok(a)
    }

    /// Switches a user's auto-reply off.
    pub fn autoreply_off(&self, user: &str) -> Result<(), OpsError> {
        self.directory.clear_autoreply(user)?;
        tracing::info!(user, "auto-reply switched off by admin");
        Ok(())
    }

    /// A user's auto-reply, if one is set (active, scheduled or ended).
    pub fn autoreply_show(&self, user: &str) -> Result<Option<Autoreply>, OpsError> {
        Ok(self.directory.get_autoreply(user)?)
    }

    /// Forwards a user's mail to `addresses` (bare names mean the primary
    /// domain), keeping a copy in the mailbox when `keep_copy`. Refused: the
    /// user's own address (use `keep_copy`), an unknown address at a local
    /// domain, and a forward that closes a loop.
    pub fn forward_set(
        &self,
        user: &str,
        addresses: &[String],
        keep_copy: bool,
    ) -> Result<Forward, OpsError> {
        if addresses.is_empty() {
            return Err(OpsError::Invalid(
                "a forward needs at least one address".into(),
            ));
        }
        let local = self.local_domains();
        let stored = self
            .directory
            .get_user(user)?
            .ok_or_else(|| postamt_directory::DirectoryError::NoSuchUser(user.to_owned()))?
            .name;
        let mut qualified = Vec::with_capacity(addresses.len());
        for a in addresses {
            let a = self.qualify(a);
            if let Some((l, d)) = a.rsplit_once('@')
                && local.contains(d)
                && l.eq_ignore_ascii_case(&stored)
            {
                return Err(OpsError::Invalid(format!(
                    "{a} is {stored}'s own address; to keep a copy in the mailbox, use --keep-copy"
                )));
            }
            self.check_local_address(&a, "forward address")?;
            qualified.push(a);
        }
        let previous = self.directory.get_forward(&stored)?;
        let forward = self.directory.set_forward(&stored, &qualified, keep_copy)?;
        // Would mail to the user now go round in circles?
        let own = format!("{stored}@{}", self.config.primary_domain());
        let problem = match self.directory.classify(&own, &local) {
            Err(ResolveError::Loop(at)) => Some(format!("it would loop at {at}")),
            Err(ResolveError::TooDeep(n)) => Some(format!("the chain would pass {n} steps")),
            _ => None,
        };
        if let Some(problem) = problem {
            match previous {
                Some(p) => {
                    self.directory
                        .set_forward(&stored, &p.addresses, p.keep_copy)?;
                }
                None => self.directory.clear_forward(&stored)?,
            }
            return Err(OpsError::Invalid(format!(
                "refused: mail to {stored} could not be delivered, {problem}; the previous setting is kept"
            )));
        }
        tracing::info!(user = %forward.user, targets = ?forward.addresses, keep_copy, "forward set by admin");
        Ok(forward)
    }

    /// Removes a user's forward; mail goes to the mailbox again.
    pub fn forward_off(&self, user: &str) -> Result<(), OpsError> {
        self.directory.clear_forward(user)?;
        tracing::info!(user, "forward removed by admin");
        Ok(())
    }

    /// A user's forward, if one is set.
    pub fn forward_show(&self, user: &str) -> Result<Option<Forward>, OpsError> {
        Ok(self.directory.get_forward(user)?)
    }
}
