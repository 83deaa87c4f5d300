//! What "did you mean" keeps of every user, and its binary form in the Redis store.

use super::sorted_keys::{DecodeError, SortedKeys, StringList, put_u32, take, take_u32};
use super::{UserKeys, best_matches};
use crate::domain::snapshot::lower;
use crate::domain::{SfId, SfUser, name_key};

const DIRECTORY_MAGIC: &[u8] = b"crm-username directory 1\n";

/// What "did you mean" shows of each user (id, username, name), with the keys to find them:
/// what a store that does not hold the whole org keeps in memory for it, about 130 bytes a
/// user.
pub struct Directory {
    keys: UserKeys,
    ids: Vec<SfId>,
    usernames: StringList,
    names: StringList,
}

impl Directory {
    /// `users`: (id, username, name) of each user.
    pub fn new<'a>(users: impl ExactSizeIterator<Item = (SfId, &'a str, &'a str)>) -> Self {
        let mut ids = Vec::with_capacity(users.len());
        let mut usernames = StringList::default();
        let mut names = StringList::default();
        let mut keys = Vec::with_capacity(users.len());
        for (id, username, name) in users {
            ids.push(id);
            usernames.push(username);
            names.push(name);
            keys.push((lower(username).into_owned(), name_key(name)));
        }
        usernames.shrink_to_fit();
        names.shrink_to_fit();
        Directory {
            keys: UserKeys::new(keys.into_iter()),
            ids,
            usernames,
            names,
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// A compact binary form, already sorted: reading it back costs a copy, not a sort, and
    /// little more memory than the result.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(DIRECTORY_MAGIC);
        put_u32(&mut out, self.ids.len() as u32);
        for id in &self.ids {
            out.extend_from_slice(id.as_str15().as_bytes());
        }
        self.usernames.encode(&mut out);
        self.names.encode(&mut out);
        self.keys.usernames.encode(&mut out);
        self.keys.names.encode(&mut out);
        out
    }

    pub fn from_bytes(mut input: &[u8]) -> Result<Self, DecodeError> {
        let input = &mut input;
        if take(input, DIRECTORY_MAGIC.len())? != DIRECTORY_MAGIC {
            return Err(DecodeError("not a directory"));
        }
        let n = take_u32(input)? as usize;
        let raw = take(input, n.checked_mul(15).ok_or(DecodeError("too long"))?)?;
        let ids = raw
            .chunks_exact(15)
            .map(|id| {
                std::str::from_utf8(id)
                    .ok()
                    .and_then(|id| SfId::parse(id).ok())
                    .ok_or(DecodeError("bad user id"))
            })
            .collect::<Result<Vec<SfId>, _>>()?;
        let usernames = StringList::decode(input)?;
        let names = StringList::decode(input)?;
        let keys = UserKeys {
            usernames: SortedKeys::decode(input, n)?,
            names: SortedKeys::decode(input, n)?,
        };
        if usernames.len() != n || names.len() != n || !input.is_empty() {
            return Err(DecodeError("counts disagree"));
        }
        Ok(Directory {
            keys,
            ids,
            usernames,
            names,
        })
    }

    /// As `Org::closest_usernames`; the users carry only id, username and name.
    pub fn closest_usernames(&self, login: &str, limit: usize) -> Vec<SfUser> {
        self.users(self.keys.closest_usernames(login, limit), limit)
    }

    /// As `Org::closest_names`; the users carry only id, username and name.
    pub fn closest_names(&self, name: &str, limit: usize) -> Vec<SfUser> {
        self.users(self.keys.closest_names(name, limit), limit)
    }

    fn users(&self, found: Vec<(usize, u32)>, limit: usize) -> Vec<SfUser> {
        best_matches(found, limit, |i| self.usernames.get(i as usize))
            .into_iter()
            .map(|i| {
                let i = i as usize;
                SfUser {
                    id: self.ids[i],
                    username: self.usernames.get(i).to_owned(),
                    email: String::new(),
                    name: self.names.get(i).to_owned(),
                    is_active: true,
                    profile_id: None,
                    profile_name: None,
                    user_license: None,
                    role_id: None,
                    user_type: None,
                    modified_at: None,
                }
            })
            .collect()
    }
}
