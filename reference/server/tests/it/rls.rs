//! Who sees and changes what (plan 0.2, DESIGN §4, §8), checked as the `authenticated` and
//! `anon` roles themselves: direct SQL under `SET LOCAL ROLE` with `request.jwt.claims`, and the
//! same callers through the HTTP API.

use crate::fixture;
use axum::http::Method;
use serde_json::{json, Value};
use tokio_postgres::Client;
use uuid::Uuid;

/// Runs `sql` as database role `role` with `claims`, the way PostgREST runs a request, and
/// returns the first column of the first row, or the error's SQLSTATE.
async fn as_role(client: &mut Client, role: &str, claims: &Value, sql: &str) -> Result<i64, String> {
    as_role_on_topic(client, role, claims, "", sql).await
}

/// Like [`as_role`] with `realtime.topic` set, as Realtime sets it to authorize a join.
async fn as_role_on_topic(
    client: &mut Client,
    role: &str,
    claims: &Value,
    topic: &str,
    sql: &str,
) -> Result<i64, String> {
    let tx = client.transaction().await.unwrap();
    tx.execute("SELECT set_config('request.jwt.claims', $1, true)", &[&claims.to_string()]).await.unwrap();
    tx.execute("SELECT set_config('realtime.topic', $1, true)", &[&topic]).await.unwrap();
    tx.batch_execute(&format!("SET LOCAL ROLE {role}")).await.unwrap();
    let result = tx.query_one(sql, &[]).await;
    let out = match result {
        Ok(row) => Ok(row.get::<_, i64>(0)),
        Err(e) => Err(e.code().map(|c| c.code().to_owned()).unwrap_or_else(|| e.to_string())),
    };
    tx.rollback().await.unwrap();
    out
}

fn user(id: Uuid) -> Value {
    json!({"role": "authenticated", "sub": id})
}

#[tokio::test]
async fn table_reads_follow_membership_under_the_authenticated_role() {
    let f = fixture().await;
    let editor = f.app.create_user().await;
    let viewer = f.app.create_user().await;
    let stranger = f.app.create_user().await;
    f.app.add_member(f.owner, f.project, editor, "editor").await;
    f.app.add_member(f.owner, f.project, viewer, "viewer").await;
    f.upsert("a.txt", "a", None).await;
    f.upsert("a.txt", "a2", None).await;

    let mut client = f.app.db.connect().await.unwrap();
    let files = format!("SELECT count(*) FROM public.project_files WHERE project_id = '{}'", f.project);
    let current = format!("SELECT count(*) FROM public.project_files_current WHERE project_id = '{}'", f.project);
    let legacy = format!("SELECT count(*) FROM public.legacy_project_files WHERE project_id = '{}'", f.project);
    let projects = "SELECT count(*) FROM public.projects".to_owned();
    let members = "SELECT count(*) FROM public.project_members".to_owned();

    for who in [f.owner, editor, viewer] {
        assert_eq!(as_role(&mut client, "authenticated", &user(who), &files).await, Ok(2), "every version");
        assert_eq!(as_role(&mut client, "authenticated", &user(who), &current).await, Ok(1));
        assert_eq!(as_role(&mut client, "authenticated", &user(who), &legacy).await, Ok(1));
        assert_eq!(as_role(&mut client, "authenticated", &user(who), &projects).await, Ok(1));
        assert_eq!(as_role(&mut client, "authenticated", &user(who), &members).await, Ok(3));
    }
    // A non-member sees nothing at all.
    for sql in [&files, &current, &legacy, &projects, &members] {
        assert_eq!(as_role(&mut client, "authenticated", &user(stranger), sql).await, Ok(0), "{sql}");
    }
    // anon has no privilege on the tables.
    for sql in [&files, &current, &projects] {
        assert_eq!(as_role(&mut client, "anon", &json!({"role": "anon"}), sql).await, Err("42501".into()), "{sql}");
    }
    // A container token reads nothing directly (it has the two read RPCs).
    let container =
        json!({"role": "authenticated", "sub": fsync_testkit::new_id(), "scope": "container", "project_id": f.project});
    assert_eq!(as_role(&mut client, "authenticated", &container, &current).await, Ok(0));
    assert_eq!(as_role(&mut client, "authenticated", &container, &files).await, Ok(0));
    assert_eq!(as_role(&mut client, "authenticated", &container, &members).await, Ok(0));
    assert_eq!(as_role(&mut client, "authenticated", &container, &projects).await, Ok(0));
}

#[tokio::test]
async fn direct_table_writes_are_refused_even_to_owners() {
    let f = fixture().await;
    let mut client = f.app.db.connect().await.unwrap();
    let insert = format!(
        "WITH i AS (INSERT INTO public.project_files (project_id, file_path, file_type, content, created_by, seq)
         VALUES ('{}', 'x', 'text', 'x', '{}', 99) RETURNING 1) SELECT count(*) FROM i",
        f.project, f.owner
    );
    assert_eq!(as_role(&mut client, "authenticated", &user(f.owner), &insert).await, Err("42501".into()));
    let update = "WITH u AS (UPDATE public.projects SET seq = 100 RETURNING 1) SELECT count(*) FROM u";
    assert_eq!(as_role(&mut client, "authenticated", &user(f.owner), update).await, Err("42501".into()));
}

#[tokio::test]
async fn owners_and_editors_write_viewers_get_403_strangers_404() {
    let f = fixture().await;
    let editor = f.app.create_user().await;
    let viewer = f.app.create_user().await;
    let stranger = f.app.create_user().await;
    f.app.add_member(f.owner, f.project, editor, "editor").await;
    f.app.add_member(f.owner, f.project, viewer, "viewer").await;
    let args =
        |path: &str| json!({"project_uuid": f.project, "p_file_path": path, "p_content": path, "p_file_type": "text"});

    let (status, body) = f.app.rpc(Some(&f.app.user_token(editor)), "upsert_project_file", args("e.txt")).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = f.app.rpc(Some(&f.owner_token), "upsert_project_file", args("o.txt")).await;
    assert_eq!(status, 200, "{body}");

    let viewer_token = f.app.user_token(viewer);
    let (status, body) = f.app.rpc(Some(&viewer_token), "upsert_project_file", args("v.txt")).await;
    assert_eq!((status.as_u16(), body["code"].as_str()), (403, Some("42501")), "{body}");
    let (status, _) = f
        .app
        .rpc(Some(&viewer_token), "delete_project_file", json!({"project_uuid": f.project, "p_file_path": "o.txt"}))
        .await;
    assert_eq!(status, 403);
    let (status, _) = f
        .app
        .rpc(
            Some(&viewer_token),
            "bulk_upsert_project_files",
            json!({"project_uuid": f.project, "files": [{"file_path": "v", "file_type": "text", "content": "v"}]}),
        )
        .await;
    assert_eq!(status, 403);
    let (status, body) = f.app.rpc(Some(&viewer_token), "list_current_files", json!({"project_uuid": f.project})).await;
    assert_eq!(status, 200);
    assert_eq!(body.as_array().unwrap().len(), 2, "viewers read");

    // A non-member cannot tell the project exists.
    let stranger_token = f.app.user_token(stranger);
    for (function, args) in [
        ("upsert_project_file", args("s.txt")),
        ("list_current_files", json!({"project_uuid": f.project})),
        ("list_changes_since", json!({"project_uuid": f.project, "since_seq": 0})),
    ] {
        let (status, body) = f.app.rpc(Some(&stranger_token), function, args).await;
        assert_eq!((status.as_u16(), body["code"].as_str()), (404, Some("PT404")), "{function}: {body}");
    }
    // anon cannot call the RPCs at all: with the anon key as Bearer, or with no Authorization
    // header (the apikey is then the caller).
    let (status, body) = f.app.rpc(None, "list_current_files", json!({"project_uuid": f.project})).await;
    assert_eq!((status.as_u16(), body["code"].as_str()), (403, Some("42501")), "{body}");
    let headers = [("apikey", f.app.anon_key.as_str()), ("content-type", "application/json")];
    let body = json!({"project_uuid": f.project}).to_string();
    let answer = f.app.api().send(Method::POST, "/rest/v1/rpc/list_current_files", &headers, body).await.unwrap();
    let reply = fsync_client::Reply::from(answer);
    assert_eq!((reply.status, reply.body["code"].as_str()), (403, Some("42501")), "{}", reply.body);

    // Only the owner manages members.
    let (status, _) = f
        .app
        .rpc(
            Some(&f.app.user_token(editor)),
            "add_project_member",
            json!({"project_uuid": f.project, "p_user_id": stranger, "p_role": "editor"}),
        )
        .await;
    assert_eq!(status, 403);
    assert_eq!(f.row_count().await, 2, "only the owner's and the editor's writes landed");
}

#[tokio::test]
async fn a_container_token_reads_its_project_only_and_writes_nothing() {
    let f = fixture().await;
    f.upsert("a.txt", "a", None).await;
    let other_owner = f.app.create_user().await;
    let other = f.app.create_project(other_owner).await;
    let token = f.app.container_token(f.project);

    let (status, body) = f.app.rpc(Some(&token), "list_current_files", json!({"project_uuid": f.project})).await;
    assert_eq!((status.as_u16(), body.as_array().map(Vec::len)), (200, Some(1)), "{body}");
    let (status, _) =
        f.app.rpc(Some(&token), "list_changes_since", json!({"project_uuid": f.project, "since_seq": 0})).await;
    assert_eq!(status, 200);

    let (status, body) = f
        .app
        .rpc(
            Some(&token),
            "upsert_project_file",
            json!({"project_uuid": f.project, "p_file_path": "c", "p_content": "c", "p_file_type": "text"}),
        )
        .await;
    assert_eq!((status.as_u16(), body["message"].as_str()), (403, Some("container tokens cannot write")));
    let (status, _) = f
        .app
        .rpc(Some(&token), "delete_project_file", json!({"project_uuid": f.project, "p_file_path": "a.txt"}))
        .await;
    assert_eq!(status, 403);
    let (status, _) = f.app.rpc(Some(&token), "create_project", json!({"p_name": "x"})).await;
    assert_eq!(status, 403);
    let (status, _) = f.app.rpc(Some(&token), "list_current_files", json!({"project_uuid": other})).await;
    assert_eq!(status, 404, "another project does not exist for a container token");
    assert_eq!(f.row_count().await, 1);
}

#[tokio::test]
async fn snapshot_bucket_takes_writes_only_from_the_service_role() {
    let f = fixture().await;
    let mut client = f.app.db.connect().await.unwrap();
    let insert = "WITH i AS (INSERT INTO storage.objects (bucket_id, name) VALUES ('project-snapshots', 'p/s.zip') RETURNING 1) SELECT count(*) FROM i";
    assert_eq!(as_role(&mut client, "authenticated", &user(f.owner), insert).await, Err("42501".into()));
    assert_eq!(as_role(&mut client, "anon", &json!({"role": "anon"}), insert).await, Err("42501".into()));
    assert_eq!(as_role(&mut client, "service_role", &json!({"role": "service_role"}), insert).await, Ok(1));
    // Public reads fail: nobody but the service role sees the bucket's objects.
    client
        .execute("INSERT INTO storage.objects (bucket_id, name) VALUES ('project-snapshots', 'p/kept.zip')", &[])
        .await
        .unwrap();
    let read = "SELECT count(*) FROM storage.objects WHERE bucket_id = 'project-snapshots'";
    assert_eq!(as_role(&mut client, "authenticated", &user(f.owner), read).await, Ok(0));
    assert_eq!(as_role(&mut client, "anon", &json!({"role": "anon"}), read).await, Ok(0));
    let public: bool = client
        .query_one("SELECT public FROM storage.buckets WHERE id = 'project-snapshots'", &[])
        .await
        .unwrap()
        .get(0);
    assert!(!public);
}

#[tokio::test]
async fn realtime_topic_policy_admits_members_and_the_scoped_container_only() {
    let f = fixture().await;
    let viewer = f.app.create_user().await;
    let stranger = f.app.create_user().await;
    f.app.add_member(f.owner, f.project, viewer, "viewer").await;
    let other = f.app.create_project(stranger).await;
    f.upsert("a.txt", "a", None).await; // puts a message on the topic

    let mut client = f.app.db.connect().await.unwrap();
    // Realtime's join check: with realtime.topic set, can the caller select the topic's messages?
    let topic = format!("project:{}", f.project);
    let probe = format!("SELECT count(*) FROM realtime.messages WHERE topic = '{topic}'");
    let container =
        json!({"role": "authenticated", "sub": fsync_testkit::new_id(), "scope": "container", "project_id": f.project});
    let foreign =
        json!({"role": "authenticated", "sub": fsync_testkit::new_id(), "scope": "container", "project_id": other});
    for (claims, want) in [(user(f.owner), 1), (user(viewer), 1), (user(stranger), 0), (container, 1), (foreign, 0)] {
        assert_eq!(as_role_on_topic(&mut client, "authenticated", &claims, &topic, &probe).await, Ok(want), "{claims}");
    }
    // The clients' topic: members read it, the container does not; owners and editors may
    // send on it, and nobody on the server's topic.
    let client_topic = format!("project:{}:client", f.project);
    let probe_client = format!("SELECT count(*) FROM realtime.messages WHERE topic = '{client_topic}'");
    client
        .execute(
            "INSERT INTO realtime.messages (topic, extension, private) VALUES ($1, 'broadcast', true)",
            &[&client_topic],
        )
        .await
        .unwrap();
    let container =
        json!({"role": "authenticated", "sub": fsync_testkit::new_id(), "scope": "container", "project_id": f.project});
    assert_eq!(
        as_role_on_topic(&mut client, "authenticated", &user(viewer), &client_topic, &probe_client).await,
        Ok(1)
    );
    assert_eq!(as_role_on_topic(&mut client, "authenticated", &container, &client_topic, &probe_client).await, Ok(0));
    let send = |t: &str| {
        format!("WITH i AS (INSERT INTO realtime.messages (topic, extension, event, payload, private) VALUES ('{t}', 'broadcast', 'cursor', '{{}}', true) RETURNING 1) SELECT count(*) FROM i")
    };
    let owner_send =
        as_role_on_topic(&mut client, "authenticated", &user(f.owner), &client_topic, &send(&client_topic)).await;
    assert_eq!(owner_send, Ok(1));
    let viewer_send =
        as_role_on_topic(&mut client, "authenticated", &user(viewer), &client_topic, &send(&client_topic)).await;
    assert_eq!(viewer_send, Err("42501".into()));
    let server_topic_send = as_role_on_topic(&mut client, "authenticated", &user(f.owner), &topic, &send(&topic)).await;
    assert_eq!(server_topic_send, Err("42501".into()));

    // The same caller on another topic name is refused: the policy reads realtime.topic().
    assert_eq!(
        as_role_on_topic(&mut client, "authenticated", &user(f.owner), &format!("project:{other}"), &probe).await,
        Ok(0)
    );
}

/// Membership needs no consent, so it must not reveal anyone's email: a profile is its user's
/// own, and co-members learn each other's display names only, through `list_project_members`.
#[tokio::test]
async fn co_members_see_each_others_names_and_never_an_email() {
    let f = fixture().await;
    let editor = f.app.create_user().await;
    f.app.add_member(f.owner, f.project, editor, "editor").await;
    let editor_token = f.app.user_token(editor);
    let client = f.app.db.connect().await.unwrap();
    client.execute("UPDATE public.user_profiles SET display_name = 'Ed' WHERE id = $1", &[&editor]).await.unwrap();

    // Profiles: each user reads their own row, email included, and no one else's.
    let reply = f.app.api().read(Some(&f.owner_token), "user_profiles", "select=id,email").await.unwrap();
    let rows = reply.body.as_array().cloned().unwrap_or_default();
    assert_eq!(rows.len(), 1, "{} {}", reply.status, reply.body);
    assert_eq!(rows[0]["id"], json!(f.owner));
    assert!(rows[0]["email"].as_str().is_some_and(|e| e.starts_with(&f.owner.to_string())));

    // Members: names and roles, for members only.
    let (status, members) =
        f.app.rpc(Some(&editor_token), "list_project_members", json!({"project_uuid": f.project})).await;
    assert_eq!(status, 200, "{members}");
    let mut want = vec![
        json!({"user_id": f.owner, "role": "owner", "display_name": null}),
        json!({"user_id": editor, "role": "editor", "display_name": "Ed"}),
    ];
    want.sort_by_key(|m| m["user_id"].as_str().unwrap().to_owned());
    assert_eq!(members, Value::Array(want));
    assert!(!members.to_string().contains('@'), "no email in {members}");
    let stranger = f.app.user_token(f.app.create_user().await);
    let (status, _) = f.app.rpc(Some(&stranger), "list_project_members", json!({"project_uuid": f.project})).await;
    assert_eq!(status, 404);
    let container = f.app.container_token(f.project);
    let (status, _) = f.app.rpc(Some(&container), "list_project_members", json!({"project_uuid": f.project})).await;
    assert_eq!(status, 403);
}
