//! Integration tests of the reference server and the SQL API, on real PostgreSQL: a fresh
//! database per test, and the real server on port 0 where the HTTP layer matters.

mod bad_input;
mod bounds;
mod bulk;
mod concurrency;
mod connections;
mod least_privilege;
mod legacy_writes;
mod metrics;
mod migrations;
mod rate_limits;
mod realtime;
mod rest_read;
mod rls;
mod rpc_contract;
mod security;
mod security_review;
mod serve;
mod storage;
mod supabase_js;
mod surface;

use fsync_testkit::TestApp;
use serde_json::{json, Value};
use uuid::Uuid;

/// An app with one project owned by a user: the starting point of most tests.
pub struct Fixture {
    pub app: TestApp,
    pub owner: Uuid,
    pub owner_token: String,
    pub project: Uuid,
}

pub async fn fixture() -> Fixture {
    let app = fsync_testkit::spawn_app(Default::default()).await;
    let owner = app.create_user().await;
    let project = app.create_project(owner).await;
    let owner_token = app.user_token(owner);
    Fixture { app, owner, owner_token, project }
}

impl Fixture {
    pub async fn upsert(&self, path: &str, content: &str, expected: Option<i64>) -> (reqwest::StatusCode, Value) {
        let mut args = json!({
            "project_uuid": self.project, "p_file_path": path, "p_content": content, "p_file_type": "text",
        });
        if let Some(v) = expected {
            args["expected_version"] = json!(v);
        }
        self.app.rpc(Some(&self.owner_token), "upsert_project_file", args).await
    }

    pub async fn delete(&self, path: &str, expected: Option<i64>) -> (reqwest::StatusCode, Value) {
        let mut args = json!({"project_uuid": self.project, "p_file_path": path});
        if let Some(v) = expected {
            args["expected_version"] = json!(v);
        }
        self.app.rpc(Some(&self.owner_token), "delete_project_file", args).await
    }

    pub async fn bulk(&self, files: Value) -> (reqwest::StatusCode, Value) {
        self.app
            .rpc(
                Some(&self.owner_token),
                "bulk_upsert_project_files",
                json!({"project_uuid": self.project, "files": files}),
            )
            .await
    }

    pub async fn current_files(&self) -> Value {
        let (status, body) =
            self.app.rpc(Some(&self.owner_token), "list_current_files", json!({"project_uuid": self.project})).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// The project's seq, read directly.
    pub async fn seq(&self) -> i64 {
        let client = self.app.db.connect().await.unwrap();
        client.query_one("SELECT seq FROM public.projects WHERE id = $1", &[&self.project]).await.unwrap().get(0)
    }

    /// Every row of the project's files (all versions), read directly.
    pub async fn row_count(&self) -> i64 {
        let client = self.app.db.connect().await.unwrap();
        client
            .query_one("SELECT count(*) FROM public.project_files WHERE project_id = $1", &[&self.project])
            .await
            .unwrap()
            .get(0)
    }

    /// (event, payload) of every broadcast sent for the project, in send order.
    /// Sets the write rate limit of the fixture's database (`0006_rate_limits.sql`).
    pub async fn set_write_limit(&self, burst: f64, per_second: f64) {
        let client = self.app.db.connect().await.unwrap();
        let statement = "UPDATE fsync.rate_limits SET burst = $1, per_second = $2 WHERE name = 'writes'";
        client.execute(statement, &[&burst, &per_second]).await.unwrap();
    }

    pub async fn events(&self) -> Vec<(String, Value)> {
        let client = self.app.db.connect().await.unwrap();
        client
            .query(
                "SELECT event, payload FROM realtime.messages WHERE topic = $1 ORDER BY (payload ->> 'seq')::bigint",
                &[&format!("project:{}", self.project)],
            )
            .await
            .unwrap()
            .into_iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect()
    }
}
