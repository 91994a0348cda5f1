//! The model held to PostgreSQL, and the versioning and concurrency properties of DESIGN §10.
//!
//! Case counts are small by default so the test command stays fast; `FSYNC_PROPTEST_SCALE=N`
//! multiplies every property test's cases by N for long runs.

mod concurrency;
mod differential;
mod platform;
mod server_on_model;
mod snapshots;

use fsync_model::state::{Access, Profile, Project};
use fsync_model::MemStore;
use fsync_reference::PgStore;
use fsync_store::data::{RpcCall, RpcOutput, Store};
use fsync_store::error::ApiError;
use fsync_store::RequestAuth;
use fsync_testkit::TestDb;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::sync::OnceLock;
use uuid::Uuid;

/// `FSYNC_PROPTEST_SCALE` (default 1) times `base` cases.
pub fn cases(base: u32) -> u32 {
    let scale: u32 = std::env::var("FSYNC_PROPTEST_SCALE").ok().and_then(|v| v.parse().ok()).unwrap_or(1);
    base.saturating_mul(scale.max(1))
}

/// One runtime and one migrated database for every property test in this binary: each case
/// works in projects and users of its own, so cases do not see each other.
pub struct Shared {
    pub runtime: tokio::runtime::Runtime,
    pub db: TestDb,
    pub pg: PgStore,
}

pub fn shared() -> &'static Shared {
    static SHARED: OnceLock<Shared> = OnceLock::new();
    SHARED.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let (db, pg) = runtime.block_on(async {
            let db = TestDb::migrated().await.expect("a database");
            let pg = PgStore::connect(&db.url).await.expect("the store");
            (db, pg)
        });
        Shared { runtime, db, pg }
    })
}

/// Who calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Who {
    Owner,
    Editor,
    Viewer,
    Stranger,
    Container,
    OtherContainer,
    Service,
    Anon,
}

pub const EVERYONE: [Who; 8] =
    [Who::Owner, Who::Editor, Who::Viewer, Who::Stranger, Who::Container, Who::OtherContainer, Who::Service, Who::Anon];

/// The users and the project of one case, present in both stores with the same ids.
pub struct World {
    pub owner: Uuid,
    pub editor: Uuid,
    pub viewer: Uuid,
    pub stranger: Uuid,
    pub project: Uuid,
    pub model: MemStore,
}

impl World {
    /// Fresh users and a project, in PostgreSQL and in a fresh model.
    pub async fn new(pg_db: &TestDb) -> World {
        let [owner, editor, viewer, stranger, project] = [(); 5].map(|_| fsync_testkit::new_id());
        let client = pg_db.connect().await.unwrap();
        for user in [owner, editor, viewer, stranger] {
            client
                .execute(
                    "INSERT INTO public.user_profiles (id, email) VALUES ($1, $2)",
                    &[&user, &format!("{user}@x.test")],
                )
                .await
                .unwrap();
        }
        client
            .execute("INSERT INTO public.projects (id, name, owner_id) VALUES ($1, 'case', $2)", &[&project, &owner])
            .await
            .unwrap();
        client
            .execute(
                "INSERT INTO public.project_members (project_id, user_id, role) VALUES ($1, $2, 'editor'), ($1, $3, 'viewer')",
                &[&project, &editor, &viewer],
            )
            .await
            .unwrap();
        let model = MemStore::new();
        model.seed(|state| {
            for user in [owner, editor, viewer, stranger] {
                state.profiles.insert(user, Profile { email: Some(format!("{user}@x.test")), display_name: None });
            }
            let members = BTreeMap::from([(owner, Access::Owner), (editor, Access::Editor), (viewer, Access::Viewer)]);
            state.projects.insert(project, Project { name: "case".into(), owner, seq: 0, members });
        });
        World { owner, editor, viewer, stranger, project, model }
    }

    pub fn auth(&self, who: Who) -> RequestAuth {
        let user = |id: Uuid| json!({"role": "authenticated", "sub": id, "email": format!("{id}@x.test")});
        let claims = match who {
            Who::Owner => user(self.owner),
            Who::Editor => user(self.editor),
            Who::Viewer => user(self.viewer),
            Who::Stranger => user(self.stranger),
            Who::Container => {
                json!({"role": "authenticated", "sub": Uuid::from_u128(7), "scope": "container", "project_id": self.project})
            }
            Who::OtherContainer => {
                json!({"role": "authenticated", "sub": Uuid::from_u128(8), "scope": "container", "project_id": Uuid::from_u128(9)})
            }
            Who::Service => json!({"role": "service_role"}),
            Who::Anon => json!({"role": "anon"}),
        };
        let Value::Object(claims) = claims else { unreachable!() };
        RequestAuth { role: claims["role"].as_str().unwrap().to_owned(), claims }
    }
}

/// A call's outcome, comparable across stores: success JSON without the fields that cannot
/// agree (timestamps, row ids), or the error as the client sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum Seen {
    Ok(Value),
    NoContent,
    Err { status: u16, code: String, message: String, details: Value, hint: Option<String> },
}

pub fn normalize(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(k, _)| {
                    !matches!(k.as_str(), "updated_at" | "created_at" | "timestamp" | "id" | "parent_version_id")
                })
                .map(|(k, v)| (k, normalize(v)))
                .collect::<Map<_, _>>(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(normalize).collect()),
        other => other,
    }
}

pub fn seen(result: Result<RpcOutput, ApiError>) -> Seen {
    match result {
        Ok(RpcOutput::Json(text)) => Seen::Ok(normalize(serde_json::from_str(&text).expect("JSON result"))),
        Ok(RpcOutput::NoContent) => Seen::NoContent,
        Err(e) => Seen::Err {
            status: e.status.as_u16(),
            code: e.body.code,
            message: e.body.message,
            // Details may be JSON text whose key order differs: compare parsed.
            details: e
                .body
                .details
                .map(|d| serde_json::from_str(&d).unwrap_or(Value::String(d)))
                .unwrap_or(Value::Null),
            hint: e.body.hint,
        },
    }
}

/// Calls `function` on both stores as `who`; returns (PostgreSQL, model).
pub async fn both(world: &World, pg: &PgStore, who: Who, function: &str, args: Value) -> (Seen, Seen) {
    let Value::Object(args) = args else { panic!("args must be an object") };
    let call = RpcCall { function: function.to_owned(), args, read_only: false };
    let auth = world.auth(who);
    let on_pg = seen(pg.rpc(&auth, call.clone()).await);
    let on_model = seen(world.model.rpc(&auth, call).await);
    (on_pg, on_model)
}

/// The project's whole history, as PostgreSQL holds it: (path, version, seq, current, deleted,
/// type, hash, content, created_by, last_modified_by), and the project seq.
pub type HistoryRow = (String, i32, i64, bool, bool, String, Option<String>, Option<String>, Uuid, Option<Uuid>);

pub async fn pg_history(db: &TestDb, project: Uuid) -> (Vec<HistoryRow>, i64) {
    let client = db.connect().await.unwrap();
    let rows = client
        .query(
            "SELECT file_path, version, seq, is_current_version, is_deleted, file_type, content_hash, content, created_by, last_modified_by
             FROM public.project_files WHERE project_id = $1 ORDER BY file_path COLLATE \"C\", version",
            &[&project],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5), r.get(6), r.get(7), r.get(8), r.get(9)))
        .collect();
    let seq = client.query_one("SELECT seq FROM public.projects WHERE id = $1", &[&project]).await.unwrap().get(0);
    (rows, seq)
}

pub fn model_history(model: &MemStore, project: Uuid) -> (Vec<HistoryRow>, i64) {
    let state = model.snapshot();
    let mut rows = Vec::new();
    for ((p, path), versions) in &state.files {
        if *p != project {
            continue;
        }
        for (i, r) in versions.iter().enumerate() {
            rows.push((
                path.clone(),
                r.version,
                r.seq,
                i + 1 == versions.len(),
                r.deleted,
                r.file_type.clone(),
                r.content_hash.clone(),
                r.content.clone(),
                r.created_by,
                r.last_modified_by,
            ));
        }
    }
    (rows, state.projects[&project].seq)
}

/// (event, payload without timestamp/id) of every broadcast PostgreSQL stored for the project.
pub async fn pg_events(db: &TestDb, project: Uuid) -> Vec<(String, Value)> {
    let client = db.connect().await.unwrap();
    client
        .query(
            "SELECT event, payload FROM realtime.messages WHERE topic = $1 AND payload IS NOT NULL ORDER BY (payload ->> 'seq')::bigint",
            &[&format!("project:{project}")],
        )
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.get::<_, String>(0), normalize(r.get::<_, Value>(1))))
        .collect()
}
