//! Test doubles for [`Backend`] and [`Mailbox`]: one account (`alice`,
//! password `secret`) whose mailbox lives in memory, with switches to make
//! opening, reading or deleting fail.

use crate::backend::{AuthFailed, Backend, Mailbox, ReadAhead, ReadAheadResult};
use postamt_store::{MessageInfo, StoreError};
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

pub const USER: &str = "alice";
pub const PASSWORD: &str = "secret";

#[derive(Default)]
pub struct FakeStore {
    pub messages: Mutex<Vec<(MessageInfo, Vec<u8>)>>,
    pub locked: AtomicBool,
    pub fail_open: AtomicBool,
    pub fail_read: AtomicBool,
    pub fail_delete: AtomicBool,
    /// Every `delete` call, as uids.
    pub delete_calls: Mutex<Vec<Vec<String>>>,
    /// Trips to the store: `read` and `read_ahead` calls.
    pub trips: AtomicUsize,
    /// Messages read ahead, in all.
    pub read_ahead: AtomicUsize,
}

impl FakeStore {
    pub fn with_messages(msgs: &[(&str, &[u8])]) -> Arc<FakeStore> {
        let store = FakeStore::default();
        for (uid, data) in msgs {
            store.add(uid, data);
        }
        Arc::new(store)
    }

    pub fn add(&self, uid: &str, data: &[u8]) {
        let info = MessageInfo {
            uid: uid.to_owned(),
            size: data.len() as u64,
            path: PathBuf::from(format!("/fake/new/{uid}")),
            queue_id: Some(format!("q{uid}")),
        };
        self.messages
            .lock()
            .expect("test mutex")
            .push((info, data.to_vec()));
    }

    pub fn uids(&self) -> Vec<String> {
        self.messages
            .lock()
            .expect("test mutex")
            .iter()
            .map(|(i, _)| i.uid.clone())
            .collect()
    }

    pub fn is_locked(&self) -> bool {
        self.locked.load(Ordering::SeqCst)
    }
}

pub struct FakeBackend {
    pub store: Arc<FakeStore>,
}

pub struct FakeMailbox {
    store: Arc<FakeStore>,
}

impl Drop for FakeMailbox {
    fn drop(&mut self) {
        self.store.locked.store(false, Ordering::SeqCst);
    }
}

impl Backend for FakeBackend {
    type Mailbox = FakeMailbox;

    fn authenticate(
        &self,
        user: &str,
        password: &str,
    ) -> impl Future<Output = Result<String, AuthFailed>> + Send {
        let ok = user.eq_ignore_ascii_case(USER) && password == PASSWORD;
        async move {
            if ok {
                Ok(USER.to_owned())
            } else {
                Err(AuthFailed)
            }
        }
    }

    fn open_mailbox(
        &self,
        user: &str,
    ) -> impl Future<Output = Result<(FakeMailbox, Vec<MessageInfo>), StoreError>> + Send {
        assert_eq!(user, USER, "the session opens the canonical account");
        let store = self.store.clone();
        async move {
            if store.fail_open.load(Ordering::SeqCst) {
                return Err(StoreError::Io(std::io::Error::other("disk on fire")));
            }
            if store.locked.swap(true, Ordering::SeqCst) {
                return Err(StoreError::InUse);
            }
            let infos = store
                .messages
                .lock()
                .expect("test mutex")
                .iter()
                .map(|(i, _)| i.clone())
                .collect();
            Ok((FakeMailbox { store }, infos))
        }
    }
}

impl FakeMailbox {
    fn lookup(&self, msg: &MessageInfo) -> Result<Vec<u8>, StoreError> {
        if self.store.fail_read.load(Ordering::SeqCst) {
            Err(StoreError::Io(std::io::Error::other("bad sector")))
        } else {
            self.store
                .messages
                .lock()
                .expect("test mutex")
                .iter()
                .find(|(i, _)| i.uid == msg.uid)
                .map(|(_, d)| d.clone())
                .ok_or_else(|| StoreError::Gone(msg.uid.clone()))
        }
    }
}

impl Mailbox for FakeMailbox {
    fn read(&self, msg: &MessageInfo) -> impl Future<Output = Result<Vec<u8>, StoreError>> + Send {
        self.store.trips.fetch_add(1, Ordering::SeqCst);
        let result = self.lookup(msg);
        async move { result }
    }

    fn read_ahead(
        &self,
        first: &MessageInfo,
        next: &[MessageInfo],
        ahead: ReadAhead,
    ) -> impl Future<Output = ReadAheadResult> + Send {
        self.store.trips.fetch_add(1, Ordering::SeqCst);
        let result = self.lookup(first);
        let mut extra = Vec::new();
        if result.is_ok() {
            for msg in &next[..ahead.plan(next)] {
                let Ok(data) = self.lookup(msg) else { break };
                extra.push(data);
            }
        }
        self.store
            .read_ahead
            .fetch_add(extra.len(), Ordering::SeqCst);
        async move { (result, extra) }
    }

    fn delete(&self, msgs: &[MessageInfo]) -> impl Future<Output = Result<(), StoreError>> + Send {
        let uids: Vec<String> = msgs.iter().map(|m| m.uid.clone()).collect();
        self.store
            .delete_calls
            .lock()
            .expect("test mutex")
            .push(uids.clone());
        let result = if self.store.fail_delete.load(Ordering::SeqCst) {
            Err(StoreError::Io(std::io::Error::other("read-only")))
        } else {
            self.store
                .messages
                .lock()
                .expect("test mutex")
                .retain(|(i, _)| !uids.contains(&i.uid));
            Ok(())
        };
        async move { result }
    }
}
