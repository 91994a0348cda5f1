//! The people and projects a run measures with, created through the public API: one owner
//! (with a user token), and projects loaded from fixtures.

use crate::clock;
use anyhow::{bail, Context};
use fsync_client::Api;
use fsync_fixtures::Size;
use fsync_protocol::jwt::{self, Secret};
use serde_json::json;
use uuid::Uuid;

/// The owner of every project of a run.
pub struct Owner {
    pub id: Uuid,
    pub token: String,
}

/// Creates the owner's profile (as the service role) and mints their token (a day long).
pub async fn owner(api: &Api, service_key: &str, secret: &Secret, id: Uuid) -> anyhow::Result<Owner> {
    profile(api, service_key, id).await?;
    let claims = jwt::user_claims(&id.to_string(), &email(id), clock::wall_s(), 24 * 3600);
    Ok(Owner { id, token: jwt::sign(secret, &claims) })
}

/// Creates user `id`'s profile as the service role.
pub async fn profile(api: &Api, service_key: &str, id: Uuid) -> anyhow::Result<()> {
    let args = json!({"p_user_id": id, "p_email": email(id), "p_display_name": "kpi owner"});
    let reply = api.rpc(Some(service_key), "ensure_user_profile", args).await.context("ensure_user_profile")?;
    if !reply.is_success() {
        bail!("ensure_user_profile: HTTP {} {}", reply.status, reply.body);
    }
    Ok(())
}

fn email(id: Uuid) -> String {
    format!("kpi-{id}@example.test")
}

/// A new project of `owner` named `name`, holding fixture `size`/`seed` (empty for `None`).
pub async fn project(api: &Api, owner: &Owner, name: &str, fixture: Option<(Size, u64)>) -> anyhow::Result<Uuid> {
    let reply =
        // The owner named: a member may name themself, and the service role must name someone.
        api.rpc(Some(&owner.token), "create_project", json!({"p_name": name, "p_owner": owner.id}))
            .await
            .context("create_project")?;
    let Some(project) = reply.uuid("id") else { bail!("create_project: HTTP {} {}", reply.status, reply.body) };
    if let Some((size, seed)) = fixture {
        let fixture = fsync_fixtures::generate(size, seed);
        fsync_fixtures::load::files(api, &owner.token, project, &fixture)
            .await
            .with_context(|| format!("load fixture {size} seed {seed}"))?;
    }
    Ok(project)
}

/// Writes one file as `owner` (a new `seq`, so the next session needs a new snapshot).
pub async fn touch(api: &Api, owner: &Owner, project: Uuid, path: &str, content: String) -> anyhow::Result<()> {
    let args = json!({"project_uuid": project, "p_file_path": path, "p_content": content, "p_file_type": "text"});
    let reply = api.rpc(Some(&owner.token), "upsert_project_file", args).await.context("upsert_project_file")?;
    if !reply.is_success() {
        bail!("upsert_project_file: HTTP {} {}", reply.status, reply.body);
    }
    Ok(())
}

/// The project a delta run edits: the small fixture (seed 2) and an empty `live/` directory, where
/// every edit lands.
pub async fn edited_project(api: &Api, owner: &Owner) -> anyhow::Result<Uuid> {
    let project = project(api, owner, "kpi delta", Some((Size::Small, 2))).await?;
    touch(api, owner, project, &format!("{}/.keep", crate::measure::delta::LIVE_DIR), String::new()).await?;
    Ok(project)
}
