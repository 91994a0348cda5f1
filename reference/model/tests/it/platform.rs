//! The platform port held to PostgreSQL: for every kind of caller, the same answers from the
//! model and from PostgreSQL on who may record, see (sign, download) and delete which storage
//! object, what the buckets are, who may see a project, and what a snapshot read returns at a
//! seq — including a read opened before a write, which must still show the project as it was —
//! and which snapshot records may be pruned when.

use crate::{both, shared, Who, World, EVERYONE};
use fsync_model::MemStore;
use fsync_protocol::snapshot::{snapshot_id, SessionView, FILES_BUCKET, SNAPSHOT_BUCKET};
use fsync_reference::PgStore;
use fsync_store::error::ApiError;
use fsync_store::platform::{PlatformStore, SnapshotFile};
use fsync_store::sessions::SessionRecord;
use fsync_store::snapshots::{PruneQuery, SnapshotKey, SnapshotSigned};
use serde_json::json;
use uuid::Uuid;

/// A port call's outcome, comparable across stores (object ids cannot agree: only whether one
/// came back).
type Outcome<T> = Result<T, ApiError>;

/// Runs `f` on PostgreSQL and on the model and checks they agree.
macro_rules! agree {
    ($world:expr, $pg:expr, $what:expr, |$store:ident| $call:expr) => {{
        let on_pg = {
            let $store: &dyn PlatformStore = $pg;
            $call.await
        };
        let on_model = {
            let $store: &dyn PlatformStore = &$world.model;
            $call.await
        };
        assert_eq!(on_pg, on_model, "{} (left: PostgreSQL, right: the model)", $what);
        on_pg
    }};
}

fn recorded(result: Outcome<Option<Uuid>>) -> Outcome<bool> {
    result.map(|id| id.is_some())
}

/// The object names a case uses: its project's, another project's, one that names no project.
fn names(world: &World) -> Vec<String> {
    let other = fsync_testkit::new_id();
    vec![format!("{}/aa", world.project), format!("{other}/bb"), format!("plain-{}/cc", world.project)]
}

#[test]
fn who_may_record_see_and_delete_storage_objects() {
    let shared = shared();
    shared.runtime.block_on(async {
        let world = World::new(&shared.db).await;
        let pg: &PgStore = &shared.pg;
        for bucket in [FILES_BUCKET, SNAPSHOT_BUCKET, "no-such-bucket"] {
            let _ = agree!(world, pg, format!("bucket {bucket}"), |s| s.bucket_public(bucket));
        }
        let metadata = json!({"size": 3, "mimetype": "text/plain"});
        for bucket in [FILES_BUCKET, SNAPSHOT_BUCKET] {
            for name in names(&world) {
                // An object the service role put there: who sees it, who may replace or delete it.
                let _ = agree!(world, pg, "service records", |s| s.record_object_as_service(bucket, &name, &metadata));
                let _ = agree!(world, pg, format!("mimetype of {bucket}/{name}"), |s| s.object_mimetype(bucket, &name));
                for who in EVERYONE {
                    let auth = world.auth(who);
                    let what = |op: &str| format!("{who:?} {op} {bucket}/{name}");
                    let _ = agree!(world, pg, what("sees"), |s| s.object_visible(&auth, bucket, &name));
                    let _ = agree!(world, pg, what("records again"), |s| async {
                        recorded(s.record_object(&auth, bucket, &name, &metadata, false).await)
                    });
                }
                for who in EVERYONE {
                    let auth = world.auth(who);
                    let what = |op: &str| format!("{who:?} {op} {bucket}/{name}");
                    let _ = agree!(world, pg, what("replaces"), |s| async {
                        recorded(s.record_object(&auth, bucket, &name, &metadata, true).await)
                    });
                    let _ = agree!(world, pg, what("deletes"), |s| s.delete_object_row(&auth, bucket, &name));
                    let _ = agree!(world, pg, what("sees after deleting"), |s| s.object_visible(&auth, bucket, &name));
                    let _ =
                        agree!(world, pg, "service records", |s| s.record_object_as_service(bucket, &name, &metadata));
                }
                // Objects of its own: who may upload one at all.
                for who in EVERYONE {
                    let auth = world.auth(who);
                    let own = format!("{name}-{who:?}");
                    let what = |op: &str| format!("{who:?} {op} {bucket}/{own}");
                    let new = agree!(world, pg, what("uploads"), |s| async {
                        recorded(s.record_object(&auth, bucket, &own, &json!({"size": 1}), false).await)
                    });
                    let _ = agree!(world, pg, what("sees its upload"), |s| s.object_visible(&auth, bucket, &own));
                    let _ = agree!(world, pg, what("mimetype"), |s| s.object_mimetype(bucket, &own));
                    if new == Ok(true) {
                        let _ = agree!(world, pg, what("forgets"), |s| s.forget_object(bucket, &own));
                        let _ =
                            agree!(world, pg, what("sees the forgotten"), |s| s.object_visible(&auth, bucket, &own));
                    }
                }
            }
        }
    });
}

#[test]
fn who_may_see_a_project() {
    let shared = shared();
    shared.runtime.block_on(async {
        let world = World::new(&shared.db).await;
        let pg: &PgStore = &shared.pg;
        for who in EVERYONE {
            let auth = world.auth(who);
            let _ = agree!(world, pg, format!("{who:?} sees the project"), |s| s.is_member(&auth, world.project));
            let nowhere = Uuid::from_u128(99);
            let _ = agree!(world, pg, format!("{who:?} sees no project"), |s| s.is_member(&auth, nowhere));
        }
    });
}

async fn drain(store: &dyn PlatformStore, project: Uuid) -> Option<(i64, Vec<SnapshotFile>)> {
    let mut read = store.open_snapshot(project).await.unwrap()?;
    let mut files = Vec::new();
    while let Some(file) = read.next_file().await.unwrap() {
        files.push(file);
    }
    Some((read.seq(), files))
}

#[test]
fn a_snapshot_read_is_the_project_at_its_seq() {
    let shared = shared();
    shared.runtime.block_on(async {
        let world = World::new(&shared.db).await;
        let pg: &PgStore = &shared.pg;
        let project = world.project;
        let writes = [
            ("bulk_upsert_project_files", json!({"project_uuid": project, "files": [
                {"file_path": "b/z.ts", "file_type": "typescript", "content": "z"},
                {"file_path": "B.md", "file_type": "markdown", "content": "upper"},
                {"file_path": "a.ts", "file_type": "typescript", "content": "a"},
            ]})),
            ("upsert_project_file", json!({"project_uuid": project, "p_file_path": "a.ts", "p_content": "a2",
                "p_file_type": "typescript", "expected_version": 1})),
            ("delete_project_file", json!({"project_uuid": project, "p_file_path": "b/z.ts"})),
        ];
        for (function, args) in writes {
            let (on_pg, on_model) = both(&world, pg, Who::Owner, function, args).await;
            assert_eq!(on_pg, on_model, "{function}");
        }
        let read = agree!(world, pg, "the snapshot read", |s| drain(s, project));
        let (seq, files) = read.expect("the project exists");
        assert_eq!(seq, 3);
        let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["B.md", "a.ts"], "live files only, in bytewise order");
        assert_eq!(files[1].version, 2);
        let _ = agree!(world, pg, "no such project", |s| drain(s, Uuid::from_u128(98)));

        // A read opened before a write shows the project as it was when it opened.
        let model: &MemStore = &world.model;
        let stores: [&dyn PlatformStore; 2] = [pg, model];
        let mut opened = Vec::new();
        for store in stores {
            opened.push(store.open_snapshot(project).await.unwrap().unwrap());
        }
        let args = json!({"project_uuid": project, "p_file_path": "late.ts", "p_content": "late", "p_file_type": "typescript"});
        let (on_pg, on_model) = both(&world, pg, Who::Owner, "upsert_project_file", args).await;
        assert_eq!(on_pg, on_model);
        for mut read in opened {
            let mut paths = Vec::new();
            while let Some(file) = read.next_file().await.unwrap() {
                paths.push(file.path);
            }
            assert_eq!((read.seq(), paths), (3, vec!["B.md".to_owned(), "a.ts".to_owned()]));
        }
    });
}

/// `upsert_project_binary` on both stores, for every caller: refused before the bytes are in
/// storage, then recorded (and a repeat is a no-op), with the object's size and storage key in the
/// row, the same events, and the same snapshot read.
#[test]
fn binaries_are_recorded_alike() {
    use fsync_store::data::{Filter, FilterOp, ReadQuery, Store};
    let shared = shared();
    shared.runtime.block_on(async {
        let world = World::new(&shared.db).await;
        let pg: &PgStore = &shared.pg;
        let project = world.project;
        let mut deliveries = Store::listen(&world.model).await.unwrap();
        let hash = fsync_protocol::hash::hex_sha256(b"\x89PNG fake image bytes");
        let record = |path: String, file_type: Option<&str>, expected: Option<i32>| {
            let mut args = json!({"project_uuid": project, "p_file_path": path, "p_content_hash": hash});
            if let Some(file_type) = file_type {
                args["p_file_type"] = json!(file_type);
            }
            if let Some(expected) = expected {
                args["expected_version"] = json!(expected);
            }
            args
        };
        for who in EVERYONE {
            let (on_pg, on_model) =
                both(&world, pg, who, "upsert_project_binary", record(format!("early-{who:?}.png"), None, None)).await;
            assert_eq!(on_pg, on_model, "{who:?} records before the upload");
        }
        let name = format!("{project}/{hash}");
        let metadata = json!({"size": 21, "mimetype": "image/png"});
        let _ = agree!(world, pg, "the upload", |s| s.record_object_as_service(FILES_BUCKET, &name, &metadata));
        for who in EVERYONE {
            let path = format!("img/{who:?}.png");
            for (what, args) in [
                ("records", record(path.clone(), Some("image"), None)),
                ("repeats", record(path.clone(), Some("image"), Some(7))),
                ("records with the default type", record(path.clone(), None, None)),
                ("records against a stale version", record(path.clone(), Some("image"), Some(1))),
                ("records a bad hash", json!({"project_uuid": project, "p_file_path": path, "p_content_hash": "ABC"})),
            ] {
                let (on_pg, on_model) = both(&world, pg, who, "upsert_project_binary", args).await;
                assert_eq!(on_pg, on_model, "{who:?} {what}");
            }
        }
        for (function, args) in [
            ("list_current_files", json!({"project_uuid": project})),
            ("list_changes_since", json!({"project_uuid": project, "since_seq": 0})),
        ] {
            let (on_pg, on_model) = both(&world, pg, Who::Owner, function, args).await;
            assert_eq!(on_pg, on_model, "{function}");
        }
        let query = ReadQuery {
            relation: "project_files".into(),
            columns: Some(vec!["file_path".into(), "version".into(), "size_bytes".into(), "storage_key".into()]),
            filters: vec![Filter {
                column: "project_id".into(),
                op: FilterOp::Eq,
                negated: false,
                values: vec![project.to_string()],
            }],
            order: vec![
                fsync_store::data::OrderTerm { column: "file_path".into(), descending: false, nulls_first: None },
                fsync_store::data::OrderTerm { column: "version".into(), descending: false, nulls_first: None },
            ],
            ..ReadQuery::default()
        };
        let owner = world.auth(Who::Owner);
        let rows = |r: Result<fsync_store::data::ReadOutput, ApiError>| {
            r.map(|o| serde_json::from_str::<serde_json::Value>(&o.rows_json).unwrap())
        };
        let on_pg = rows(Store::read(pg, &owner, query.clone()).await);
        let on_model = rows(Store::read(&world.model, &owner, query).await);
        assert_eq!(on_pg, on_model, "rows with size and storage key");
        assert!(on_pg
            .unwrap()
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["storage_key"] == json!(format!("project-files/{name}"))));
        let read = agree!(world, pg, "the snapshot read", |s| drain(s, project));
        assert!(read.unwrap().1.iter().all(|f| f.content.is_none() && f.storage_key.is_some()));
        let mut model_events = Vec::new();
        while let Ok(fsync_store::data::Delivery::Message(m)) = deliveries.try_recv() {
            model_events.push((m.event, crate::normalize(serde_json::from_str(&m.payload_json).unwrap())));
        }
        assert_eq!(crate::pg_events(&shared.db, project).await, model_events, "broadcasts");
    });
}

/// Snapshot records (`0009_snapshots.sql`): what is noted, superseded and claimed when, alike.
/// The only test in this binary that makes snapshot records (a claim spans every project).
#[test]
fn snapshots_are_claimed_alike_once_superseded_and_unsigned() {
    let shared = shared();
    shared.runtime.block_on(async {
        let world = &World::new(&shared.db).await;
        let pg: &PgStore = &shared.pg;
        let (project, gone) = (world.project, Uuid::from_u128(0x60e));
        let signed = |project: Uuid, seq: i64, at_s: u64, until_s: u64| SnapshotSigned {
            project,
            snapshot_id: snapshot_id(seq),
            seq,
            at_s,
            until_s,
        };
        let key = |project: Uuid, seq: i64| SnapshotKey { project, snapshot_id: snapshot_id(seq) };
        let note = |signed: SnapshotSigned, expected: bool| async move {
            let noted = agree!(world, pg, format!("note {signed:?}"), |s| s.note_snapshot_signed(&signed));
            assert_eq!(noted.unwrap(), expected, "note {signed:?}");
        };
        let claim = |expired_before_s: u64, superseded_before_s: u64, limit: usize, mut expected: Vec<SnapshotKey>| {
            let query = PruneQuery { expired_before_s, superseded_before_s, limit };
            expected.sort(); // claims come in key order
            async move {
                let claimed = agree!(world, pg, format!("claim {query:?}"), |s| s.claim_prunable_snapshots(query));
                assert_eq!(claimed.unwrap(), expected, "claim {query:?}");
            }
        };
        // 1 is superseded by 3 at 1100, 3 by 5 at 1200; a project that is gone is superseded
        // from the start.
        note(signed(project, 1, 1000, 1000), true).await;
        note(signed(project, 1, 1000, 1900), true).await;
        note(signed(project, 3, 1100, 1100), true).await;
        note(signed(project, 5, 1200, 1300), true).await;
        note(signed(gone, 2, 1000, 1060), true).await;

        claim(1060, 1000, 10, vec![]).await; // nothing expired
        claim(1150, 1150, 10, vec![key(gone, 2)]).await; // 3 expired, but was superseded at 1200

        // No URL for a snapshot being removed; a shorter URL does not shorten a life, a longer
        // one lengthens it.
        note(signed(gone, 2, 1150, 5000), false).await;
        note(signed(project, 1, 1500, 1200), true).await;
        note(signed(project, 3, 1500, 2500), true).await;
        claim(1800, 1200, 10, vec![key(gone, 2)]).await; // 1's URL lives until 1900; 2 again (cut short)
        claim(1950, 1200, 1, vec![key(project, 1)]).await; // fresh claims before retries
        note(signed(project, 1, 1950, 9000), false).await;
        claim(1950, 1200, 10, vec![key(project, 1), key(gone, 2)]).await;

        for pruned in [key(project, 1), key(gone, 2)] {
            let _ = agree!(world, pg, format!("forget {pruned:?}"), |s| s.forget_snapshot(&pruned));
        }
        claim(9999, 9999, 10, vec![key(project, 3)]).await; // never the newest

        // A snapshot first signed after a later one exists, or after its project is gone, is
        // superseded at once.
        note(signed(project, 4, 3000, 3000), true).await;
        note(signed(gone, 7, 3000, 3000), true).await;
        claim(9999, 3000, 10, vec![key(project, 3), key(project, 4), key(gone, 7)]).await;
    });
}

/// Session records: a member's cap, and a project deleted before the record is made, alike.
#[test]
fn sessions_are_recorded_alike_up_to_the_cap_and_never_for_a_missing_project() {
    let shared = shared();
    shared.runtime.block_on(async {
        let world = World::new(&shared.db).await;
        let pg: &PgStore = &shared.pg;
        let record = |project: Uuid| SessionRecord {
            view: SessionView::starting(fsync_testkit::new_id(), project, String::new(), true),
            started_by: world.owner.to_string(),
            instance: "one".into(),
            ended_at_s: None,
        };
        for (project, expected) in [(world.project, Ok(true)), (world.project, Ok(false))] {
            let record = record(project);
            let inserted = agree!(world, pg, "insert a session", |s| s.insert_session(&record, 1));
            assert_eq!(inserted.map_err(|e| e.status.as_u16()), expected);
        }
        let missing = record(Uuid::from_u128(0xdead));
        let refused = agree!(world, pg, "a missing project", |s| s.insert_session(&missing, 1)).unwrap_err();
        assert_eq!((refused.status.as_u16(), refused.body.code.as_str()), (404, "PT404"), "{refused:?}");
    });
}

/// A live session's record ending is notified alike (`0010_session_lifecycle.sql`), in commit
/// order, however it ends (saved stopped, failed by a restarted instance, its starter removed);
/// a record that only moves between live states (`running` ⇄ `behind`) is not.
#[test]
fn a_sessions_end_is_notified_alike_however_it_ends() {
    use fsync_protocol::snapshot::SessionStatus;
    use fsync_store::data::{Delivery, Store};
    use fsync_store::sessions::SessionEnd;
    let shared = shared();
    shared.runtime.block_on(async {
        let world = World::new(&shared.db).await;
        let pg: &PgStore = &shared.pg;
        let mut on_pg = Store::listen(pg).await.unwrap();
        let mut on_model = world.model.listen().await.unwrap();
        let record = |by: Uuid, instance: &str| SessionRecord {
            view: SessionView::starting(fsync_testkit::new_id(), world.project, String::new(), true),
            started_by: by.to_string(),
            instance: instance.into(),
            ended_at_s: None,
        };
        let (mut saved, failed, removed) =
            (record(world.owner, "one"), record(world.owner, "two"), record(world.editor, "one"));
        for record in [&saved, &failed, &removed] {
            let _ = agree!(world, pg, "insert a session", |s| s.insert_session(record, 10)).unwrap();
        }
        for status in [SessionStatus::Running, SessionStatus::Behind, SessionStatus::Running, SessionStatus::Stopped] {
            saved.view.status = status;
            saved.ended_at_s = status.is_final().then_some(1_000);
            agree!(world, pg, format!("save {status:?}"), |s| s.save_session(&saved)).unwrap();
        }
        let _ = agree!(world, pg, "fail instance two", |s| s.fail_sessions_of("two", "restarted", 1_000)).unwrap();
        let args = json!({"project_uuid": world.project, "p_user_id": world.editor});
        let (a, b) = both(&world, pg, Who::Owner, "remove_project_member", args).await;
        assert_eq!(a, b, "the removal");
        // Saving what is already ended notifies nothing again.
        agree!(world, pg, "save again", |s| s.save_session(&saved)).unwrap();

        let ours = [saved.view.id, failed.view.id, removed.view.id];
        let expected =
            vec![(ours[0], SessionEnd::Stopped), (ours[1], SessionEnd::Failed), (ours[2], SessionEnd::Stopped)];
        let ends = |delivery: Delivery| match delivery {
            Delivery::SessionEnded { session, end } if ours.contains(&session) => Some((session, end)),
            _ => None,
        };
        let mut model_ends = Vec::new();
        while let Ok(delivery) = on_model.try_recv() {
            model_ends.extend(ends(delivery));
        }
        assert_eq!(model_ends, expected, "the model");
        let mut pg_ends = Vec::new();
        while pg_ends.len() < expected.len() {
            let next = tokio::time::timeout(std::time::Duration::from_secs(10), on_pg.recv()).await;
            pg_ends.extend(ends(next.expect("PostgreSQL notifies").expect("the feed is open")));
        }
        assert_eq!(pg_ends, expected, "PostgreSQL");
        // Nothing more: the ended record saved again is not notified again.
        let quiet = std::time::Duration::from_millis(300);
        while let Ok(Some(delivery)) = tokio::time::timeout(quiet, on_pg.recv()).await {
            assert_eq!(ends(delivery), None, "PostgreSQL notified an end twice");
        }
    });
}
