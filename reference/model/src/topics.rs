//! Realtime authorization (`0004_storage_realtime.sql`): what a caller may do on a private topic.

use crate::state::{Access, Caller, State};
use uuid::Uuid;

impl State {
    /// (read, write) on a private topic, as the `realtime.messages` policies decide.
    pub fn topic_access(&self, caller: &Caller, topic: &str) -> (bool, bool) {
        if caller.role == "service_role" {
            return (true, true); // BYPASSRLS
        }
        if caller.role != "authenticated" {
            return (false, false);
        }
        // `project:<uuid>` (server events) or `project:<uuid>:client` (clients' broadcasts).
        let rest = topic.strip_prefix("project:").unwrap_or("");
        let (id, client_topic) = match rest.strip_suffix(":client") {
            Some(id) => (id, true),
            None => (rest, false),
        };
        let project = Some(id).filter(|id| id.len() == 36).and_then(|id| Uuid::parse_str(id).ok());
        let access = project.and_then(|p| self.access_role(caller, Some(p)));
        let writer = matches!(access, Some(Access::Owner | Access::Editor | Access::Service));
        if client_topic {
            (access.is_some_and(|a| a != Access::Container), writer)
        } else {
            (access.is_some(), false)
        }
    }
}
