//! Mailing-list operations for admins: create, change, delete, members,
//! overview. Bare names given where an address belongs (`bob`) mean that
//! name at the primary domain; an address at a local domain must exist
//! (user, alias or list), so a typo does not silently swallow mail.

use crate::{Admin, OpsError};
use postamt_directory::{
    ListInfo, ListMember, ListOptions, ListSummary, PendingAction, Posting, ReplyTo, Target,
};
use postamt_spool::QueueId;

/// One option to change (the web admin's single-field form).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListOption {
    Owner(String),
    Posting(Posting),
    ReplyTo(ReplyTo),
    SubjectPrefix(String),
    /// Bytes; 0 for the server's limit.
    MaxMessageSize(u64),
}

impl From<ListOption> for ListOptions {
    fn from(o: ListOption) -> ListOptions {
        let mut opts = ListOptions::default();
        match o {
            ListOption::Owner(a) => opts.owner = Some(a),
            ListOption::Posting(p) => opts.posting = Some(p),
            ListOption::ReplyTo(r) => opts.reply_to = Some(r),
            ListOption::SubjectPrefix(p) => opts.subject_prefix = Some(p),
            ListOption::MaxMessageSize(s) => opts.max_message_size = Some(s),
        }
        opts
    }
}

/// What deleting a list did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListDeleted {
    /// The list's stored name.
    pub name: String,
    /// Members it had.
    pub members: usize,
    /// Subscription confirmations that were still open.
    pub confirmations_dropped: usize,
    /// Held posts removed from the queue.
    pub held_posts_discarded: usize,
}

impl Admin {
    /// Creates a list. The owner defaults to the postmaster address; unset
    /// options take their defaults (members may post, replies to the list,
    /// prefix `[NAME] `, the server's size limit).
    pub fn list_create(&self, name: &str, options: &ListOptions) -> Result<ListInfo, OpsError> {
        let mut options = options.clone();
        let owner = options
            .owner
            .take()
            .unwrap_or_else(|| self.config.postmaster_address());
        let owner = self.qualify(&owner);
        self.check_local_address(&owner, "owner")?;
        options.owner = Some(owner);
        let info = self.directory.create_list(name, &options)?;
        tracing::info!(list = %info.name, owner = %info.owner, posting = %info.posting, "list created");
        Ok(info)
    }

    /// Changes the options that are set.
    pub fn list_set_options(
        &self,
        name: &str,
        options: &ListOptions,
    ) -> Result<ListInfo, OpsError> {
        if options.is_empty() {
            return Err(OpsError::Invalid(
                "nothing to change: give at least one option".into(),
            ));
        }
        let mut options = options.clone();
        if let Some(owner) = options.owner.take() {
            let owner = self.qualify(&owner);
            self.check_local_address(&owner, "owner")?;
            options.owner = Some(owner);
        }
        let info = self.directory.update_list(name, &options)?;
        tracing::info!(list = %info.name, changes = ?options, "list options changed");
        Ok(info)
    }

    /// Changes one option.
    pub fn list_set_option(&self, name: &str, option: ListOption) -> Result<ListInfo, OpsError> {
        self.list_set_options(name, &option.into())
    }

    /// Deletes a list with its members and open confirmations; held posts
    /// are removed from the queue.
    pub fn list_delete(&self, name: &str) -> Result<ListDeleted, OpsError> {
        let info = self
            .directory
            .get_list(name)?
            .ok_or_else(|| postamt_directory::DirectoryError::NoSuchList(name.to_owned()))?;
        let members = self.directory.list_members(name)?.len();
        let dropped = self.directory.delete_list(name)?;
        let mut held_posts_discarded = 0;
        let mut confirmations_dropped = 0;
        for p in &dropped {
            if p.action != PendingAction::Post {
                confirmations_dropped += 1;
                continue;
            }
            match self.discard_held_post(&p.payload) {
                Ok(true) => held_posts_discarded += 1,
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(list = %info.name, queue_id = %p.payload, error = %e, "could not discard a held post");
                }
            }
        }
        tracing::info!(list = %info.name, members, held_posts_discarded, "list deleted");
        Ok(ListDeleted {
            name: info.name,
            members,
            confirmations_dropped,
            held_posts_discarded,
        })
    }

    /// Removes a held post's message from the queue; `false` when it is
    /// not there (already gone, or not a queue id).
    fn discard_held_post(&self, payload: &str) -> Result<bool, OpsError> {
        let Ok(id) = payload.parse::<QueueId>() else {
            return Ok(false);
        };
        if self.spool.get(&id).is_err() {
            return Ok(false);
        }
        self.spool.remove(&id)?;
        tracing::info!(queue_id = %id, "held list post discarded with its list");
        Ok(true)
    }

    /// Adds a member. A bare name means that name at the primary domain.
    pub fn list_subscribe(&self, name: &str, address: &str) -> Result<ListMember, OpsError> {
        let address = self.qualify(address);
        if let Some(list) = self.directory.get_list(name)?
            && self.is_list_address(&address, &list.name)?
        {
            return Err(OpsError::Invalid(format!(
                "{address} is the list {} itself; a list cannot be its own member",
                list.name
            )));
        }
        self.check_local_address(&address, "member")?;
        let member = self.directory.add_list_member(name, &address)?;
        tracing::info!(list = name, member = %member.address, "subscribed by admin");
        Ok(member)
    }

    /// Removes a member (matched case-insensitively; a bare name means
    /// that name at the primary domain). Returns the address removed.
    pub fn list_unsubscribe(&self, name: &str, address: &str) -> Result<String, OpsError> {
        let address = self.qualify(address);
        self.directory.remove_list_member(name, &address)?;
        tracing::info!(list = name, member = %address, "unsubscribed by admin");
        Ok(address)
    }

    /// The members, ordered by address.
    pub fn list_members(&self, name: &str) -> Result<Vec<ListMember>, OpsError> {
        Ok(self.directory.list_members(name)?)
    }

    /// One list with its member count.
    pub fn list_show(&self, name: &str) -> Result<ListSummary, OpsError> {
        let list = self
            .directory
            .get_list(name)?
            .ok_or_else(|| postamt_directory::DirectoryError::NoSuchList(name.to_owned()))?;
        let members = u64::try_from(self.directory.list_members(name)?.len()).unwrap_or(u64::MAX);
        Ok(ListSummary { list, members })
    }

    /// Every list with its member count.
    pub fn lists(&self) -> Result<Vec<ListSummary>, OpsError> {
        Ok(self.directory.lists()?)
    }

    /// A bare name (`bob`) as an address at the primary domain.
    pub(crate) fn qualify(&self, address: &str) -> String {
        if address.contains('@') {
            address.to_owned()
        } else {
            format!("{address}@{}", self.config.primary_domain())
        }
    }

    /// Whether `address` is list `list` itself at one of our domains.
    fn is_list_address(&self, address: &str, list: &str) -> Result<bool, OpsError> {
        Ok(matches!(
            self.directory.classify(address, &self.local_domains()),
            Ok(Target::List { name }) if name.eq_ignore_ascii_case(list)
        ))
    }

    /// Refuses an address at one of our domains that leads nowhere
    /// (`what` names the role in the message). Remote addresses pass.
    pub(crate) fn check_local_address(&self, address: &str, what: &str) -> Result<(), OpsError> {
        let local = self.local_domains();
        let Some((_, domain)) = address.rsplit_once('@') else {
            return Ok(());
        };
        if !local.contains(domain) {
            return Ok(());
        }
        match self.directory.classify(address, &local) {
            Ok(_) => Ok(()),
            Err(postamt_directory::ResolveError::Unknown) => Err(OpsError::Invalid(format!(
                "the {what} {address} is at a local domain but is no user, alias or list here"
            ))),
            // A loop elsewhere is not this address's fault; it is reported
            // where it is made.
            Err(
                postamt_directory::ResolveError::Loop(_)
                | postamt_directory::ResolveError::TooDeep(_),
            ) => Ok(()),
            Err(postamt_directory::ResolveError::Db(e)) => {
                Err(postamt_directory::DirectoryError::Db(e).into())
            }
        }
    }

    /// Our domains, as the directory wants them.
    pub(crate) fn local_domains(&self) -> postamt_directory::LocalDomains {
        postamt_directory::LocalDomains::from_config(&self.config)
    }
}
