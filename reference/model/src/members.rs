//! Profiles, projects and memberships (`0003_rpcs.sql`): `ensure_user_profile`,
//! `create_project`, `add_project_member`, `remove_project_member` and `list_project_members`.

use crate::state::{err, invalid, Access, Caller, Outcome, Profile, Project, State};
use fsync_store::error::ApiError;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use uuid::Uuid;

/// The hint of a member's refused attempt to remove someone else (`0010_session_lifecycle.sql`).
pub const LEAVE_HINT: &str =
    "a member may remove themselves: remove_project_member with their own id leaves the project";

/// `fsync.removed_member_reason()`.
pub const REMOVED_MEMBER: &str = "the member who started it was removed from the project";

impl State {
    /// `auth.role() = 'authenticated'`, not a container, with a uid.
    fn signed_in_user(&self, caller: &Caller) -> Result<Option<Uuid>, ApiError> {
        if caller.claims_role() == Some("authenticated") && caller.claim("scope").unwrap_or("") != "container" {
            return caller.uid();
        }
        Ok(None)
    }

    pub fn ensure_user_profile(
        &mut self,
        caller: &Caller,
        user: Option<Uuid>,
        email: Option<String>,
        display_name: Option<String>,
    ) -> Result<Outcome, ApiError> {
        let id = if caller.claims_role() == Some("service_role") {
            user.ok_or_else(|| invalid("p_user_id is required with the service role"))?
        } else if let Some(uid) = self.signed_in_user(caller)? {
            if user.is_some_and(|u| u != uid) {
                return Err(err("42501", "a user can only create their own profile"));
            }
            if email.is_some() && email.as_deref() != caller.claim("email") {
                return Err(err("42501", "a user's email comes from their token"));
            }
            uid
        } else {
            return Err(err("42501", "sign in to create a profile"));
        };
        let own_email =
            if caller.uid().ok().flatten() == Some(id) { caller.claim("email").map(str::to_owned) } else { None };
        let email = email.or(own_email);
        let profile = self.profiles.entry(id).or_insert(Profile { email: None, display_name: None });
        if email.is_some() {
            profile.email = email;
        }
        if display_name.is_some() {
            profile.display_name = display_name;
        }
        let result = json!({"id": id, "email": profile.email, "display_name": profile.display_name});
        Ok(Outcome { result, messages: vec![] })
    }

    pub fn create_project(
        &mut self,
        caller: &Caller,
        name: Option<String>,
        owner: Option<Uuid>,
    ) -> Result<Outcome, ApiError> {
        let name = match name {
            Some(n) if !n.trim_matches(' ').is_empty() && n.chars().count() <= 200 => n,
            _ => return Err(invalid("p_name must be 1 to 200 characters")),
        };
        let owner = if caller.claims_role() == Some("service_role") {
            owner.ok_or_else(|| invalid("p_owner is required with the service role"))?
        } else if let Some(uid) = self.signed_in_user(caller)? {
            if owner.is_some_and(|o| o != uid) {
                return Err(err("42501", "a user can only create projects they own"));
            }
            self.profiles
                .entry(uid)
                .or_insert(Profile { email: caller.claim("email").map(str::to_owned), display_name: None });
            uid
        } else {
            return Err(err("42501", "sign in to create a project"));
        };
        if !self.profiles.contains_key(&owner) {
            return Err(err("PT404", format!("user {owner} not found")));
        }
        let id = self.ids.0.uuid();
        self.projects.insert(
            id,
            Project { name: name.clone(), owner, seq: 0, members: BTreeMap::from([(owner, Access::Owner)]) },
        );
        Ok(Outcome { result: json!({"id": id, "name": name, "owner_id": owner, "seq": 0}), messages: vec![] })
    }

    pub fn add_project_member(
        &mut self,
        caller: &Caller,
        project: Option<Uuid>,
        user: Option<Uuid>,
        role: Option<String>,
    ) -> Result<Outcome, ApiError> {
        let role = match role.as_deref() {
            Some("editor") => Access::Editor,
            Some("viewer") => Access::Viewer,
            _ => return Err(invalid("p_role must be editor or viewer")),
        };
        let (project, access) = self.require_access(caller, project, false)?;
        if !matches!(access, Access::Owner | Access::Service) {
            return Err(err("42501", "only the project owner manages members"));
        }
        let user = match user {
            Some(u) if self.profiles.contains_key(&u) => u,
            other => {
                return Err(err(
                    "PT404",
                    format!("user {} not found", other.map(|u| u.to_string()).unwrap_or_default()),
                ))
            }
        };
        if self.projects[&project].owner == user {
            return Err(invalid("the owner's role cannot change"));
        }
        self.projects.get_mut(&project).expect("checked").members.insert(user, role);
        Ok(Outcome { result: json!({"project_id": project, "user_id": user, "role": role.name()}), messages: vec![] })
    }

    /// The owner removes members; any other member may remove themselves (leave the project).
    pub fn remove_project_member(
        &mut self,
        caller: &Caller,
        project: Option<Uuid>,
        user: Option<Uuid>,
    ) -> Result<Outcome, ApiError> {
        let (project, access) = self.require_access(caller, project, false)?;
        let member = matches!(access, Access::Owner | Access::Editor | Access::Viewer);
        let leaving = member && user.is_some() && user == caller.uid()?;
        if !matches!(access, Access::Owner | Access::Service) && !leaving {
            return Err(ApiError::from_sqlstate(
                "42501",
                "only the project owner manages members",
                None,
                Some(LEAVE_HINT),
                true,
            ));
        }
        if user.is_some_and(|u| self.projects[&project].owner == u) {
            if leaving {
                return Err(invalid("the owner cannot leave their own project"));
            }
            return Err(invalid("the owner cannot be removed"));
        }
        let removed = user.and_then(|u| self.projects.get_mut(&project).expect("checked").members.remove(&u));
        if removed.is_none() {
            let who = user.map(|u| u.to_string()).unwrap_or_default();
            return Err(err("PT404", format!("user {who} is not a member of project {project}")));
        }
        // The sessions they started in the project stop (`remove_project_member`), and every
        // instance hears of it.
        let starter = user.map(|u| u.to_string()).unwrap_or_default();
        for (id, session) in
            self.sessions.iter_mut().filter(|(_, s)| s.view.project_id == project && s.started_by == starter)
        {
            if session.is_live() {
                session.view.status = fsync_protocol::snapshot::SessionStatus::Stopped;
                session.view.reason = Some(REMOVED_MEMBER.to_owned());
                self.ended.push((*id, fsync_store::sessions::SessionEnd::Stopped));
            }
        }
        Ok(Outcome { result: json!({"project_id": project, "user_id": user, "removed": true}), messages: vec![] })
    }

    /// `list_project_members`: each member's role and display name (never an email).
    pub fn list_project_members(&self, caller: &Caller, project: Option<Uuid>) -> Result<Outcome, ApiError> {
        let (project, access) = self.require_access(caller, project, false)?;
        if access == Access::Container {
            return Err(err("42501", "container tokens cannot list members"));
        }
        let members: Vec<Value> = self.projects[&project]
            .members
            .iter()
            .map(|(user, role)| {
                let name = self.profiles.get(user).and_then(|p| p.display_name.clone());
                json!({"user_id": user, "role": role.name(), "display_name": name})
            })
            .collect();
        Ok(Outcome { result: Value::Array(members), messages: vec![] })
    }
}
