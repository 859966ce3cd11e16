//! Login checks shared by every protocol (SMTP AUTH, POP3, IMAP): a cache of
//! verified credentials and growing delays after failures, so that an unknown
//! user and a wrong password look the same from outside.

use crate::{Directory, UserInfo};
use std::net::IpAddr;
use std::sync::Arc;

/// A failed login; deliberately carries no reason.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("authentication failed")]
pub struct LoginFailed;

/// Verifies logins against the directory.
pub struct Authenticator {
    _dir: Arc<Directory>,
}

impl Authenticator {
    pub fn new(dir: Arc<Directory>) -> Self {
        Authenticator { _dir: dir }
    }
    /// Checks `user`/`password` from `ip`. On failure, returns only after the
    /// delay this IP and account have earned (at least ~1 s), the same for
    /// unknown users and wrong passwords.
    pub async fn login(
        &self,
        user: &str,
        password: &str,
        ip: IpAddr,
    ) -> Result<UserInfo, LoginFailed> {
        let _ = (user, password, ip);
        todo!()
    }
}
