//! `storage.objects` as the model keeps it, and who may do what to a row, as the storage policies
//! of `0004_storage_realtime.sql` and `0005_binary_files.sql` decide: the service role bypasses
//! row level security; `project-snapshots` is closed to every API user; in `project-files`,
//! members (and the project's container token) read and owners and editors write the objects
//! named `{project_id}/...`; no policy opens any other bucket.

use crate::state::{Access, Caller, State, StoredObject};
use fsync_protocol::snapshot::{FILES_BUCKET, SNAPSHOT_BUCKET};
use fsync_store::error::ApiError;
use serde_json::Value;
use uuid::Uuid;

/// The buckets the migrations create, with whether each is public.
pub const BUCKETS: &[(&str, bool)] = &[(FILES_BUCKET, false), (SNAPSHOT_BUCKET, false)];

/// What a statement does to a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Select,
    Write,
}

/// PostgreSQL's answer when a policy refuses a new row.
fn refused() -> ApiError {
    ApiError::from_sqlstate(
        "42501",
        "new row violates row-level security policy for table \"objects\"",
        None,
        None,
        true,
    )
}

/// `fsync.object_project(name)`: the uuid a name `{project_id}/...` starts with.
pub fn object_project(name: &str) -> Option<Uuid> {
    let (prefix, _) = name.split_at_checked(36)?;
    let well_formed = name.as_bytes().get(36) == Some(&b'/')
        && prefix
            .char_indices()
            .all(|(i, c)| if [8, 13, 18, 23].contains(&i) { c == '-' } else { c.is_ascii_hexdigit() });
    well_formed.then(|| Uuid::parse_str(prefix).ok()).flatten()
}

impl State {
    /// Whether `bucket` exists, and then whether it is public.
    pub fn bucket_public(&self, bucket: &str) -> Option<bool> {
        BUCKETS.iter().find(|(id, _)| *id == bucket).map(|(_, public)| *public)
    }

    fn object_allowed(&self, caller: &Caller, bucket: &str, name: &str, op: Op) -> bool {
        if caller.role == "service_role" {
            return true; // BYPASSRLS
        }
        if bucket != FILES_BUCKET {
            return false; // project-snapshots is closed (restrictive); nothing opens other buckets
        }
        let access = self.access_role(caller, object_project(name));
        match op {
            Op::Select => access.is_some(),
            Op::Write => matches!(access, Some(Access::Owner | Access::Editor)),
        }
    }

    /// `INSERT ... ON CONFLICT DO NOTHING` (or `DO UPDATE` with `upsert`) `RETURNING id`, as
    /// `caller`: the policy check comes first, then the conflict.
    pub fn record_object(
        &mut self,
        caller: &Caller,
        bucket: &str,
        name: &str,
        metadata: &Value,
        upsert: bool,
    ) -> Result<Option<Uuid>, ApiError> {
        if !self.object_allowed(caller, bucket, name, Op::Write) {
            return Err(refused());
        }
        let owner = caller.uid().ok().flatten();
        let fresh = self.ids.0.uuid();
        match self.objects.entry((bucket.to_owned(), name.to_owned())) {
            std::collections::btree_map::Entry::Occupied(mut row) if upsert => {
                let row = row.get_mut();
                row.metadata = metadata.clone();
                row.owner = owner;
                Ok(Some(row.id))
            }
            std::collections::btree_map::Entry::Occupied(_) => Ok(None),
            std::collections::btree_map::Entry::Vacant(slot) => {
                slot.insert(StoredObject { id: fresh, owner, metadata: metadata.clone() });
                Ok(Some(fresh))
            }
        }
    }

    /// Records (or replaces the metadata of) `bucket/name` as the service role.
    pub fn record_object_as_service(&mut self, bucket: &str, name: &str, metadata: &Value) {
        let fresh = self.ids.0.uuid();
        let row = self.objects.entry((bucket.to_owned(), name.to_owned())).or_insert(StoredObject {
            id: fresh,
            owner: None,
            metadata: Value::Null,
        });
        row.metadata = metadata.clone();
    }

    /// Removes the row, whoever may see it.
    pub fn forget_object(&mut self, bucket: &str, name: &str) {
        self.objects.remove(&(bucket.to_owned(), name.to_owned()));
    }

    /// `DELETE ... RETURNING id` as `caller`: rows the policies hide are not deleted.
    pub fn delete_object_row(&mut self, caller: &Caller, bucket: &str, name: &str) -> bool {
        let key = (bucket.to_owned(), name.to_owned());
        let allowed = self.object_allowed(caller, bucket, name, Op::Write);
        allowed && self.objects.remove(&key).is_some()
    }

    /// Whether `caller` sees the row of `bucket/name`.
    pub fn object_visible(&self, caller: &Caller, bucket: &str, name: &str) -> bool {
        self.objects.contains_key(&(bucket.to_owned(), name.to_owned()))
            && self.object_allowed(caller, bucket, name, Op::Select)
    }

    /// `coalesce(metadata ->> 'mimetype', 'application/octet-stream')` of the row, if any.
    pub fn object_mimetype(&self, bucket: &str, name: &str) -> Option<String> {
        let row = self.objects.get(&(bucket.to_owned(), name.to_owned()))?;
        Some(match row.metadata.get("mimetype") {
            None | Some(Value::Null) => "application/octet-stream".to_owned(),
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_names_belong_to_the_project_they_start_with() {
        let id = "0b6f6a4e-9a2c-4c1e-8d57-3f1f2f0b9c11";
        assert_eq!(object_project(&format!("{id}/abc")), Uuid::parse_str(id).ok());
        assert_eq!(object_project(&format!("{}/abc", id.to_uppercase())), Uuid::parse_str(id).ok());
        assert_eq!(object_project(id), None, "no slash");
        assert_eq!(object_project(&format!("{id}x/abc")), None);
        assert_eq!(object_project("0b6f6a4e9a2c4c1e8d573f1f2f0b9c11abcd/abc"), None, "hyphens where they belong");
        assert_eq!(object_project("é"), None);
    }
}
