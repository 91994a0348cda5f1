//! Differential state-machine test: random operation sequences run against PostgreSQL and the
//! model must agree on every result (value or error) and on the final history and events.
//! Failing sequences shrink to minimal ones; proptest saves them under `proptest-regressions/`
//! and replays them first on every run.

use crate::{both, cases, model_history, normalize, pg_events, pg_history, shared, Seen, Who, World, EVERYONE};
use fsync_store::data::{Filter, FilterOp, OrderTerm, ReadQuery, Store};
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence, TestRunner};
use serde_json::{json, Value};
use tokio::sync::mpsc::Receiver;

const PATHS: &[&str] = &["a.txt", "src/b.ts", "src/c/d.json", "e.md"];
const BAD_PATHS: &[&str] = &["", "../x", "/abs", "a//b", "x\\y", "a\u{1}b", "./a", "a/"];
const CONTENTS: &[&str] = &["", "one", "two", "three"];
const TYPES: &[&str] = &["text", "typescript", "markdown"];

#[derive(Debug, Clone)]
enum PathGen {
    Good(usize),
    Bad(usize),
}

#[derive(Debug, Clone)]
enum ContentGen {
    /// The path's current content and type (a no-op write when the file is live).
    Head,
    Pool(usize),
    /// Above the inline event limit: the event omits it.
    Large(usize),
    Null,
}

#[derive(Debug, Clone)]
enum TypeGen {
    Pool(usize),
    Unknown,
    Null,
}

#[derive(Debug, Clone)]
enum ExpectedGen {
    Absent,
    Null,
    Zero,
    /// The head's version as the model sees it (likely to succeed).
    Head,
    /// One less than the head (stale).
    Stale,
    Fixed(i32),
}

#[derive(Debug, Clone)]
enum EntryGen {
    Upsert { path: PathGen, content: ContentGen, file_type: TypeGen, expected: ExpectedGen },
    Delete { path: PathGen, expected: ExpectedGen },
    UnknownKey,
    NotObject,
    ExpectedAsString,
}

/// A table write on `legacy_project_files` (an unmigrated client).
#[derive(Debug, Clone)]
enum LegacyGen {
    /// One row; `resolution` 0: none (create only), 1: `merge-duplicates`, 2: `ignore-duplicates`.
    Insert {
        path: PathGen,
        content: ContentGen,
        file_type: TypeGen,
        resolution: u8,
    },
    /// New content and type for the path's row; `moves` also sets another path (refused).
    Update {
        path: PathGen,
        content: ContentGen,
        file_type: TypeGen,
        moves: bool,
    },
    Delete {
        path: PathGen,
    },
}

#[derive(Debug, Clone)]
enum Op {
    Upsert {
        who: Who,
        path: PathGen,
        content: ContentGen,
        file_type: TypeGen,
        expected: ExpectedGen,
    },
    Delete {
        who: Who,
        path: PathGen,
        expected: ExpectedGen,
    },
    Bulk {
        who: Who,
        entries: Vec<EntryGen>,
        duplicate: bool,
    },
    ListCurrent {
        who: Who,
    },
    /// `list_project_members` as `who`.
    Members {
        who: Who,
    },
    /// `since_seq` = the project's seq minus `back` (negative: ahead of the project).
    ChangesSince {
        who: Who,
        back: i64,
    },
    Read {
        who: Who,
    },
    SetRole {
        target: Who,
        role: &'static str,
    },
    /// `ensure_user_profile` as `who`, for themselves (`user` None), or for `user`.
    Profile {
        who: Who,
        user: Option<Who>,
        email: u8,
        name: bool,
    },
    /// `create_project` as `who`, named by `name` (0 valid, 1 blank, 2 too long), for `owner`.
    CreateProject {
        who: Who,
        name: u8,
        owner: Option<Who>,
    },
    Remove {
        who: Who,
        target: Who,
    },
    Raw {
        who: Who,
        case: usize,
    },
    Legacy {
        who: Who,
        write: LegacyGen,
    },
}

fn legacy() -> impl Strategy<Value = LegacyGen> {
    prop_oneof![
        3 => (path(), content(), file_type(), 0..3u8).prop_map(|(path, content, file_type, resolution)| {
            LegacyGen::Insert { path, content, file_type, resolution }
        }),
        2 => (path(), content(), file_type(), prop::bool::weighted(0.1))
            .prop_map(|(path, content, file_type, moves)| LegacyGen::Update { path, content, file_type, moves }),
        1 => path().prop_map(|path| LegacyGen::Delete { path }),
    ]
}

/// The table write `write` stands for, and a label for it.
fn legacy_query(world: &World, write: &LegacyGen) -> (String, fsync_store::data::WriteQuery) {
    use fsync_store::data::{WriteKind, WriteQuery};
    let p = world.project;
    let key = |path: &str| {
        vec![
            Filter { column: "project_id".into(), op: FilterOp::Eq, negated: false, values: vec![p.to_string()] },
            Filter { column: "path".into(), op: FilterOp::Eq, negated: false, values: vec![path.to_owned()] },
        ]
    };
    let relation = "legacy_project_files".to_owned();
    match write {
        LegacyGen::Insert { path, content, file_type, resolution } => {
            let path = path_value(path);
            let (content, file_type) = content_and_type(world, path, content, file_type);
            let row = json!({"project_id": p, "path": path, "content": content, "type": file_type});
            let prefer = ["", "resolution=merge-duplicates", "resolution=ignore-duplicates"][*resolution as usize];
            let Value::Object(row) = row else { unreachable!() };
            let kind = WriteKind::Insert { rows: vec![row] };
            (format!("POST legacy {path} ({prefer})"), WriteQuery { relation, kind, prefer: prefer.to_owned() })
        }
        LegacyGen::Update { path, content, file_type, moves } => {
            let path = path_value(path);
            let (content, file_type) = content_and_type(world, path, content, file_type);
            let mut set = json!({"content": content, "type": file_type});
            if *moves {
                set["path"] = json!("moved.txt");
            }
            let Value::Object(set) = set else { unreachable!() };
            let kind = WriteKind::Update { set, filters: key(path) };
            (format!("PATCH legacy {path}"), WriteQuery { relation, kind, prefer: String::new() })
        }
        LegacyGen::Delete { path } => {
            let path = path_value(path);
            let kind = WriteKind::Delete { filters: key(path) };
            (format!("DELETE legacy {path}"), WriteQuery { relation, kind, prefer: String::new() })
        }
    }
}

fn who() -> impl Strategy<Value = Who> {
    prop_oneof![
        6 => Just(Who::Owner),
        4 => Just(Who::Editor),
        2 => Just(Who::Viewer),
        1 => Just(Who::Stranger),
        1 => Just(Who::Container),
        1 => Just(Who::OtherContainer),
        1 => Just(Who::Service),
        1 => Just(Who::Anon),
    ]
}

fn path() -> impl Strategy<Value = PathGen> {
    prop_oneof![10 => (0..PATHS.len()).prop_map(PathGen::Good), 1 => (0..BAD_PATHS.len()).prop_map(PathGen::Bad)]
}

fn content() -> impl Strategy<Value = ContentGen> {
    prop_oneof![
        10 => (0..CONTENTS.len()).prop_map(ContentGen::Pool),
        3 => Just(ContentGen::Head),
        1 => (0..2usize).prop_map(ContentGen::Large),
        1 => Just(ContentGen::Null),
    ]
}

fn file_type() -> impl Strategy<Value = TypeGen> {
    prop_oneof![12 => (0..TYPES.len()).prop_map(TypeGen::Pool), 1 => Just(TypeGen::Unknown), 1 => Just(TypeGen::Null)]
}

fn expected() -> impl Strategy<Value = ExpectedGen> {
    prop_oneof![
        3 => Just(ExpectedGen::Absent),
        1 => Just(ExpectedGen::Null),
        2 => Just(ExpectedGen::Zero),
        4 => Just(ExpectedGen::Head),
        2 => Just(ExpectedGen::Stale),
        1 => (-1..5i32).prop_map(ExpectedGen::Fixed),
    ]
}

fn entry() -> impl Strategy<Value = EntryGen> {
    prop_oneof![
        8 => (path(), content(), file_type(), expected())
            .prop_map(|(path, content, file_type, expected)| EntryGen::Upsert { path, content, file_type, expected }),
        3 => (path(), expected()).prop_map(|(path, expected)| EntryGen::Delete { path, expected }),
        1 => Just(EntryGen::UnknownKey),
        1 => Just(EntryGen::NotObject),
        1 => Just(EntryGen::ExpectedAsString),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        10 => (who(), path(), content(), file_type(), expected())
            .prop_map(|(who, path, content, file_type, expected)| Op::Upsert { who, path, content, file_type, expected }),
        4 => (who(), path(), expected()).prop_map(|(who, path, expected)| Op::Delete { who, path, expected }),
        3 => (who(), prop::collection::vec(entry(), 0..5), prop::bool::weighted(0.1))
            .prop_map(|(who, entries, duplicate)| Op::Bulk { who, entries, duplicate }),
        2 => who().prop_map(|who| Op::ListCurrent { who }),
        1 => who().prop_map(|who| Op::Members { who }),
        3 => (who(), -1..8i64).prop_map(|(who, back)| Op::ChangesSince { who, back }),
        1 => who().prop_map(|who| Op::Read { who }),
        1 => (prop_oneof![Just(Who::Editor), Just(Who::Viewer), Just(Who::Stranger), Just(Who::Owner)],
              prop_oneof![Just("editor"), Just("viewer"), Just("owner")])
            .prop_map(|(target, role)| Op::SetRole { target, role }),
        // The owner removes members; a member may remove only themselves (leave).
        1 => (prop_oneof![3 => Just(Who::Owner), 1 => who()],
              prop_oneof![Just(Who::Editor), Just(Who::Viewer), Just(Who::Owner)])
            .prop_map(|(who, target)| Op::Remove { who, target }),
        1 => (who(), prop::option::of(prop_oneof![Just(Who::Owner), Just(Who::Stranger)]), 0..3u8, any::<bool>())
            .prop_map(|(who, user, email, name)| Op::Profile { who, user, email, name }),
        1 => (who(), 0..3u8, prop::option::of(prop_oneof![Just(Who::Owner), Just(Who::Stranger)]))
            .prop_map(|(who, name, owner)| Op::CreateProject { who, name, owner }),
        2 => (who(), 0..RAW_CASES).prop_map(|(who, case)| Op::Raw { who, case }),
        3 => (who(), legacy()).prop_map(|(who, write)| Op::Legacy { who, write }),
    ]
}

const RAW_CASES: usize = 10;

/// Malformed, missing and mistyped arguments.
fn raw(world: &World, case: usize) -> (&'static str, Value) {
    let p = world.project;
    match case {
        0 => (
            "upsert_project_file",
            json!({"project_uuid": "not-a-uuid", "p_file_path": "a.txt", "p_content": "x", "p_file_type": "text"}),
        ),
        1 => (
            "upsert_project_file",
            json!({"project_uuid": p, "p_file_path": "a.txt", "p_content": "x", "p_file_type": "text", "expected_version": "two"}),
        ),
        2 => (
            "upsert_project_file",
            json!({"project_uuid": p, "p_file_path": "a.txt", "p_content": "x", "p_file_type": "text", "expected_version": 99_999_999_999i64}),
        ),
        3 => ("upsert_project_file", json!({"project_uuid": p, "p_file_path": "a.txt"})),
        4 => (
            "upsert_project_file",
            json!({"project_uuid": p, "p_file_path": "a\u{0}b", "p_content": "x", "p_file_type": "text"}),
        ),
        5 => (
            "upsert_project_file",
            json!({"project_uuid": p, "p_file_path": "a.txt", "p_content": 5, "p_file_type": "text", "expected_version": "1"}),
        ),
        6 => ("bulk_upsert_project_files", json!({"project_uuid": p, "files": "nope"})),
        7 => ("bulk_upsert_project_files", json!({"project_uuid": p, "files": []})),
        8 => ("no_such_function", json!({})),
        _ => ("list_changes_since", json!({"project_uuid": null, "since_seq": 0})),
    }
}

fn expected_value(world: &World, path: &str, e: &ExpectedGen) -> Option<Value> {
    let head = world
        .model
        .snapshot()
        .files
        .get(&(world.project, path.to_owned()))
        .and_then(|rows| rows.last().map(|r| r.version))
        .unwrap_or(0);
    match e {
        ExpectedGen::Absent => None,
        ExpectedGen::Null => Some(Value::Null),
        ExpectedGen::Zero => Some(json!(0)),
        ExpectedGen::Head => Some(json!(head)),
        ExpectedGen::Stale => Some(json!(head - 1)),
        ExpectedGen::Fixed(v) => Some(json!(v)),
    }
}

fn path_value(p: &PathGen) -> &'static str {
    match p {
        PathGen::Good(i) => PATHS[*i],
        PathGen::Bad(i) => BAD_PATHS[*i],
    }
}

/// The live head's (content, type) of `path`, as the model sees it.
fn head_of(world: &World, path: &str) -> Option<(String, String)> {
    let state = world.model.snapshot();
    let row = state.files.get(&(world.project, path.to_owned()))?.last()?.clone();
    (!row.deleted).then(|| (row.content.unwrap_or_default(), row.file_type))
}

/// (content, file_type) for a write of `path`.
fn content_and_type(world: &World, path: &str, c: &ContentGen, t: &TypeGen) -> (Value, Value) {
    match (c, head_of(world, path)) {
        (ContentGen::Head, Some((content, file_type))) => (json!(content), json!(file_type)),
        (ContentGen::Head, None) => (json!(CONTENTS[1]), type_value(t)),
        _ => (content_value(c), type_value(t)),
    }
}

fn content_value(c: &ContentGen) -> Value {
    match c {
        ContentGen::Head => json!(CONTENTS[1]),
        ContentGen::Pool(i) => json!(CONTENTS[*i]),
        ContentGen::Large(i) => json!(format!("{i}").repeat(fsync_protocol::limits::MAX_INLINE_EVENT_BYTES + 1)),
        ContentGen::Null => Value::Null,
    }
}

fn type_value(t: &TypeGen) -> Value {
    match t {
        TypeGen::Pool(i) => json!(TYPES[*i]),
        TypeGen::Unknown => json!("exe"),
        TypeGen::Null => Value::Null,
    }
}

/// The user a role change targets.
fn target_user(world: &World, who: Who) -> uuid::Uuid {
    match who {
        Who::Owner => world.owner,
        Who::Editor => world.editor,
        Who::Viewer => world.viewer,
        _ => world.stranger,
    }
}

/// Runs one op on both stores and returns a description and both outcomes.
async fn step(world: &World, op: &Op) -> (String, Seen, Seen) {
    let pg = &shared().pg;
    let p = world.project;
    let (label, (a, b)) = match op {
        Op::Upsert { who, path, content, file_type, expected } => {
            let path = path_value(path);
            let (content, file_type) = content_and_type(world, path, content, file_type);
            let mut args =
                json!({"project_uuid": p, "p_file_path": path, "p_content": content, "p_file_type": file_type});
            if let Some(e) = expected_value(world, path, expected) {
                args["expected_version"] = e;
            }
            (format!("{who:?} upsert {args}"), both(world, pg, *who, "upsert_project_file", args).await)
        }
        Op::Delete { who, path, expected } => {
            let path = path_value(path);
            let mut args = json!({"project_uuid": p, "p_file_path": path});
            if let Some(e) = expected_value(world, path, expected) {
                args["expected_version"] = e;
            }
            (format!("{who:?} delete {args}"), both(world, pg, *who, "delete_project_file", args).await)
        }
        Op::Bulk { who, entries, duplicate } => {
            let mut files: Vec<Value> = entries
                .iter()
                .map(|e| match e {
                    EntryGen::Upsert { path, content, file_type, expected } => {
                        let path = path_value(path);
                        let (content, file_type) = content_and_type(world, path, content, file_type);
                        let mut v = json!({"file_path": path, "file_type": file_type, "content": content});
                        if let Some(e) = expected_value(world, path, expected) {
                            v["expected_version"] = e;
                        }
                        v
                    }
                    EntryGen::Delete { path, expected } => {
                        let path = path_value(path);
                        let mut v = json!({"file_path": path, "delete": true});
                        if let Some(e) = expected_value(world, path, expected) {
                            v["expected_version"] = e;
                        }
                        v
                    }
                    EntryGen::UnknownKey => {
                        json!({"file_path": "a.txt", "file_type": "text", "content": "x", "colour": 1, "zz": 2})
                    }
                    EntryGen::NotObject => json!(["a.txt"]),
                    EntryGen::ExpectedAsString => {
                        json!({"file_path": "e.md", "file_type": "markdown", "content": "x", "expected_version": "1"})
                    }
                })
                .collect();
            if *duplicate {
                if let Some(first) = files.first().cloned() {
                    files.push(first);
                }
            }
            let args = json!({"project_uuid": p, "files": files});
            (format!("{who:?} bulk {args}"), both(world, pg, *who, "bulk_upsert_project_files", args).await)
        }
        Op::ListCurrent { who } => (
            format!("{who:?} list_current_files"),
            both(world, pg, *who, "list_current_files", json!({"project_uuid": p})).await,
        ),
        Op::Members { who } => (
            format!("{who:?} list_project_members"),
            both(world, pg, *who, "list_project_members", json!({"project_uuid": p})).await,
        ),
        Op::ChangesSince { who, back } => {
            let since = world.model.snapshot().projects[&p].seq - back;
            (
                format!("{who:?} list_changes_since {since}"),
                both(world, pg, *who, "list_changes_since", json!({"project_uuid": p, "since_seq": since})).await,
            )
        }
        Op::Read { who } => {
            let query = ReadQuery {
                relation: "project_files_current".into(),
                columns: None,
                filters: vec![Filter {
                    column: "project_id".into(),
                    op: FilterOp::Eq,
                    negated: false,
                    values: vec![p.to_string()],
                }],
                order: vec![OrderTerm { column: "file_path".into(), descending: false, nulls_first: None }],
                limit: None,
                offset: None,
            };
            let auth = world.auth(*who);
            let read = |r: Result<fsync_store::data::ReadOutput, fsync_store::error::ApiError>| {
                crate::seen(r.map(|o| fsync_store::data::RpcOutput::Json(o.rows_json)))
            };
            let a = read(pg.read(&auth, query.clone()).await);
            let b = read(world.model.read(&auth, query).await);
            (format!("{who:?} GET project_files_current"), (a, b))
        }
        Op::Legacy { who, write } => {
            let (label, query) = legacy_query(world, write);
            let auth = world.auth(*who);
            let wrote = |r: Result<fsync_store::data::ReadOutput, fsync_store::error::ApiError>| {
                crate::seen(r.map(|o| fsync_store::data::RpcOutput::Json(o.rows_json)))
            };
            let a = wrote(pg.write(&auth, query.clone()).await);
            let b = wrote(world.model.write(&auth, query).await);
            (format!("{who:?} {label}"), (a, b))
        }
        Op::SetRole { target, role } => {
            let args = json!({"project_uuid": p, "p_user_id": target_user(world, *target), "p_role": role});
            (format!("owner sets {target:?} to {role}"), both(world, pg, Who::Owner, "add_project_member", args).await)
        }
        Op::Profile { who, user, email, name } => {
            let me = match who {
                Who::Owner => Some(world.owner),
                Who::Editor => Some(world.editor),
                Who::Viewer => Some(world.viewer),
                Who::Stranger => Some(world.stranger),
                _ => None,
            };
            // 0: no email, 1: the caller's own (as in the token), 2: someone else's.
            let email = match (email, me) {
                (1, Some(me)) => json!(format!("{me}@x.test")),
                (1, None) | (2, _) => json!("someone@else.test"),
                _ => Value::Null,
            };
            let args = json!({
                "p_user_id": user.map(|u| target_user(world, u)),
                "p_email": email,
                "p_display_name": if *name { json!("Name") } else { Value::Null },
            });
            (format!("{who:?} ensure_user_profile {args}"), both(world, pg, *who, "ensure_user_profile", args).await)
        }
        Op::CreateProject { who, name, owner } => {
            let name = match name {
                0 => json!("project"),
                1 => json!("   "),
                _ => json!("n".repeat(201)),
            };
            let args = json!({"p_name": name, "p_owner": owner.map(|o| target_user(world, o))});
            (format!("{who:?} create_project {args}"), both(world, pg, *who, "create_project", args).await)
        }
        Op::Remove { who, target } => {
            let args = json!({"project_uuid": p, "p_user_id": target_user(world, *target)});
            (format!("{who:?} removes {target:?}"), both(world, pg, *who, "remove_project_member", args).await)
        }
        Op::Raw { who, case } => {
            let (function, args) = raw(world, *case);
            (format!("{who:?} {function} {args}"), both(world, pg, *who, function, args).await)
        }
    };
    (label, a, b)
}

fn drain(rx: &mut Receiver<fsync_store::data::Delivery>) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    while let Ok(delivery) = rx.try_recv() {
        match delivery {
            fsync_store::data::Delivery::Message(m) if m.topic.starts_with("project:") => {
                out.push((m.event, normalize(serde_json::from_str(&m.payload_json).unwrap())));
            }
            fsync_store::data::Delivery::Message(_) => {}
            fsync_store::data::Delivery::Resync => panic!("the model never misses a message"),
            // Session ends are compared by the platform tests.
            fsync_store::data::Delivery::SessionEnded { .. } => {}
        }
    }
    out
}

async fn run_case(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let shared = shared();
    let world = World::new(&shared.db).await;
    let mut model_events = world.model.listen().await.unwrap();
    for (i, op) in ops.iter().enumerate() {
        let (label, on_pg, on_model) = step(&world, op).await;
        prop_assert_eq!(&on_pg, &on_model, "op {} ({}): PostgreSQL and the model disagree", i, label);
    }
    let (pg_rows, pg_seq) = pg_history(&shared.db, world.project).await;
    let (model_rows, model_seq) = model_history(&world.model, world.project);
    prop_assert_eq!(pg_seq, model_seq, "final project seq");
    prop_assert_eq!(pg_rows, model_rows, "final history");
    prop_assert_eq!(pg_events(&shared.db, world.project).await, drain(&mut model_events), "broadcasts");
    Ok(())
}

#[test]
fn postgres_and_the_model_agree_on_random_operation_sequences() {
    let config = Config {
        cases: cases(100),
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("regressions"))),
        source_file: Some(file!()),
        ..Config::default()
    };
    let mut runner = TestRunner::new(config);
    let strategy = prop::collection::vec(op(), 1..30);
    let result = runner.run(&strategy, |ops| shared().runtime.block_on(run_case(ops)));
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// Every caller kind against the management calls and Realtime authorization, with every kind
/// of argument: the access matrix agrees, deterministically (random sequences reach some of
/// these combinations only rarely).
#[test]
fn postgres_and_the_model_agree_on_profiles_projects_members_and_topics() {
    shared().runtime.block_on(async {
        let world = World::new(&shared().db).await;
        let pg = &shared().pg;
        let nobody = fsync_testkit::new_id();
        let other_project = fsync_testkit::new_id();
        for who in EVERYONE {
            let me = match who {
                Who::Owner => Some(world.owner),
                Who::Editor => Some(world.editor),
                Who::Viewer => Some(world.viewer),
                Who::Stranger => Some(world.stranger),
                _ => None,
            };
            let mut calls: Vec<(&str, Value)> = Vec::new();
            for user in [None, me, Some(world.stranger), Some(nobody)] {
                for email in [Value::Null, json!(me.map(|m| format!("{m}@x.test"))), json!("someone@else.test")] {
                    calls.push((
                        "ensure_user_profile",
                        json!({"p_user_id": user, "p_email": email, "p_display_name": "N"}),
                    ));
                }
                for name in [json!("p"), json!(" "), json!("n".repeat(201)), Value::Null] {
                    calls.push(("create_project", json!({"p_name": name, "p_owner": user})));
                }
            }
            for target in [world.editor, world.viewer, world.stranger, world.owner, nobody] {
                for role in ["editor", "viewer", "owner", "boss"] {
                    calls.push((
                        "add_project_member",
                        json!({"project_uuid": world.project, "p_user_id": target, "p_role": role}),
                    ));
                }
            }
            for (function, args) in calls {
                let label = format!("{who:?} {function} {args}");
                let (a, b) = both(&world, pg, who, function, args).await;
                assert_eq!(a, b, "{label}");
            }
            for target in [nobody, world.stranger] {
                let args = json!({"project_uuid": world.project, "p_user_id": target});
                let (a, b) = both(&world, pg, who, "remove_project_member", args).await;
                assert_eq!(a, b, "{who:?} removes {target}");
            }
            let auth = world.auth(who);
            let p = world.project;
            for topic in [
                format!("project:{p}"),
                format!("project:{p}:client"),
                format!("project:{other_project}"),
                format!("project:{other_project}:client"),
                format!("project:{p}:other"),
                "project:not-a-uuid".to_owned(),
                "room:1".to_owned(),
            ] {
                let on_pg = pg.authorize_topic(&auth, &topic).await.unwrap();
                let on_model = world.model.authorize_topic(&auth, &topic).await.unwrap();
                assert_eq!(on_pg, on_model, "{who:?} on {topic}");
            }
        }
    });
}

/// Every caller kind against every read and write, once: the access matrix agrees.
#[test]
fn postgres_and_the_model_agree_on_who_may_do_what() {
    shared().runtime.block_on(async {
        let world = World::new(&shared().db).await;
        for who in EVERYONE {
            for op in [
                Op::Upsert {
                    who,
                    path: PathGen::Good(0),
                    content: ContentGen::Pool(1),
                    file_type: TypeGen::Pool(0),
                    expected: ExpectedGen::Absent,
                },
                Op::ListCurrent { who },
                Op::ChangesSince { who, back: 0 },
                Op::Read { who },
                Op::Delete { who, path: PathGen::Good(0), expected: ExpectedGen::Absent },
            ] {
                let (label, a, b) = step(&world, &op).await;
                assert_eq!(a, b, "{label}");
            }
        }
    });
}

/// The edges random sequences rarely reach: sizes at and past each limit, every uuid spelling
/// PostgreSQL accepts or refuses, and integer bounds.
#[test]
fn postgres_and_the_model_agree_at_the_limits() {
    use fsync_protocol::limits::{MAX_BULK_FILES, MAX_CONTENT_BYTES, MAX_PATH_BYTES};
    shared().runtime.block_on(async {
        let world = World::new(&shared().db).await;
        let mut model_events = world.model.listen().await.unwrap();
        let p = world.project.to_string();
        let hex = p.replace('-', "");
        let grouped = hex.as_bytes().chunks(4).map(|c| std::str::from_utf8(c).unwrap()).collect::<Vec<_>>().join("-");
        let upsert = |project: serde_json::Value, path: String, content: String| {
            json!({"project_uuid": project, "p_file_path": path, "p_content": content, "p_file_type": "text"})
        };
        let mut calls: Vec<(&str, serde_json::Value)> = vec![
            ("upsert_project_file", upsert(json!(p), "at-limit.txt".into(), "x".repeat(MAX_CONTENT_BYTES))),
            ("upsert_project_file", upsert(json!(p), "past-limit.txt".into(), "x".repeat(MAX_CONTENT_BYTES + 1))),
            ("upsert_project_file", upsert(json!(p), "p".repeat(MAX_PATH_BYTES), "x".into())),
            ("upsert_project_file", upsert(json!(p), "p".repeat(MAX_PATH_BYTES + 1), "x".into())),
            ("bulk_upsert_project_files", json!({"project_uuid": p, "files": vec![json!({"file_path": "a", "delete": true}); MAX_BULK_FILES + 1]})),
            // bulk:apply leaves its file list out past 128 KiB of (path + 120) per file: 1,024
            // files with 8-byte paths sit exactly at the limit, one longer path goes past it.
            ("bulk_upsert_project_files", json!({"project_uuid": p, "files": (0..1024).map(|i| json!({"file_path": format!("e/{i:06}"), "file_type": "text", "content": "x"})).collect::<Vec<_>>()})),
            ("bulk_upsert_project_files", json!({"project_uuid": p, "files": (0..1024).map(|i| json!({"file_path": if i == 0 { "f/0000000".to_owned() } else { format!("f/{i:06}") }, "file_type": "text", "content": "x"})).collect::<Vec<_>>()})),
            // Exactly the limit passes the count check (then fails on the repeated path).
            ("bulk_upsert_project_files", json!({"project_uuid": p, "files": vec![json!({"file_path": "a", "delete": true}); MAX_BULK_FILES]})),
            ("list_changes_since", json!({"project_uuid": p, "since_seq": i64::MAX})),
            ("list_changes_since", json!({"project_uuid": p, "since_seq": "9223372036854775808"})),
            ("upsert_project_file", json!({"project_uuid": p, "p_file_path": "i", "p_content": "x", "p_file_type": "text", "expected_version": 2147483647})),
            ("upsert_project_file", json!({"project_uuid": p, "p_file_path": "i", "p_content": "x", "p_file_type": "text", "expected_version": 2147483648i64})),
        ];
        for spelling in [
            p.to_uppercase(),
            format!("{{{p}}}"),
            hex.clone(),
            format!("{{{hex}}}"),
            grouped.clone(),
            format!(" {p}"),
            format!("urn:uuid:{p}"),
            format!("{p}-"),
            format!("-{hex}"),
            format!("{}--{}", &hex[..4], &hex[4..]),
            hex[..31].to_owned(),
            format!("{hex}0"),
            format!("{p}0"),
            format!("{{{p}"),
            format!("{p}}}"),
            format!("{}-{}", &hex[..28], &hex[28..]),
            format!("{}-{}", &hex[..30], &hex[30..]),
            format!("{hex}-"),
            format!("{{{hex}-}}"),
            format!("{}x{}", &hex[..16], &hex[17..]),
        ] {
            calls.push(("list_changes_since", json!({"project_uuid": spelling, "since_seq": 0})));
        }
        for (function, args) in calls {
            let label = format!("{function} {}", args.to_string().chars().take(160).collect::<String>());
            let (a, b) = both(&world, &shared().pg, Who::Owner, function, args).await;
            assert_eq!(a, b, "{label}");
        }
        let (pg_rows, pg_seq) = crate::pg_history(&shared().db, world.project).await;
        let (model_rows, model_seq) = crate::model_history(&world.model, world.project);
        assert_eq!((pg_rows, pg_seq), (model_rows, model_seq));
        let events = pg_events(&shared().db, world.project).await;
        let omitted: Vec<_> = events.iter().filter(|(e, _)| e == "bulk:apply").map(|(_, p)| p["files_omitted"].clone()).collect();
        assert_eq!(omitted, vec![json!(false), json!(true)], "at the limit the list is sent, past it not");
        assert_eq!(events, drain(&mut model_events));
    });
}
