//! The migrations (plan 0.1, 0.1.1, 0.2, 0.3): they apply to an empty database and to one in the
//! legacy shape, applying them twice changes nothing, snapshots stored before `0009` are recorded,
//! and the SQL side of every shared rule
//! agrees with the Rust side.

use fsync_protocol::limits;
use fsync_reference::pg::migrate;
use fsync_testkit::TestDb;
use std::process::Command;

const LEGACY_SHAPE: &str = include_str!("../../../../fixtures/legacy/legacy_shape.sql");

/// Everything in the database, schema and data, as `pg_dump` prints it.
fn dump(db: &TestDb) -> String {
    let output = Command::new("pg_dump").args(["--no-comments", "-d", &db.url]).output().expect("run pg_dump");
    assert!(output.status.success(), "pg_dump: {}", String::from_utf8_lossy(&output.stderr));
    let text = String::from_utf8(output.stdout).expect("utf-8 dump");
    // pg_dump brackets its output with a random \restrict key; everything else is the state.
    text.lines()
        .filter(|l| !l.starts_with("\\restrict") && !l.starts_with("\\unrestrict"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Asserts two dumps are equal, showing the first differing line rather than both dumps.
fn assert_same(after: &str, before: &str) {
    if let Some((i, (a, b))) = after.lines().zip(before.lines()).enumerate().find(|(_, (a, b))| a != b) {
        panic!("the state changed at dump line {}: now {a:?}, was {b:?}", i + 1);
    }
    assert_eq!(after.lines().count(), before.lines().count(), "the dumps differ in length");
}

/// Applies every migration file directly, without the runner's bookkeeping.
async fn apply_files_raw(db: &TestDb) {
    let client = db.connect().await.unwrap();
    for m in migrate::all() {
        client.batch_execute(m.sql).await.unwrap_or_else(|e| panic!("{}/{}: {e:?}", m.set, m.name));
    }
}

#[tokio::test]
async fn apply_to_an_empty_database_and_twice_changes_nothing() {
    let db = TestDb::empty().await.unwrap();
    let mut client = db.connect().await.unwrap();
    let applied = migrate::migrate(&mut client).await.unwrap();
    assert_eq!(applied.len(), migrate::all().count(), "{applied:?}");
    let once = dump(&db);
    assert!(migrate::migrate(&mut client).await.unwrap().is_empty(), "the runner skips what it applied");
    assert_same(&dump(&db), &once);
    // The files themselves are idempotent, with no bookkeeping to lean on.
    apply_files_raw(&db).await;
    assert_same(&dump(&db), &once);

    let current: i64 = client.query_one("SELECT count(*) FROM public.project_files_current", &[]).await.unwrap().get(0);
    assert_eq!(current, 0, "the view works");
}

#[tokio::test]
async fn a_legacy_database_is_migrated_and_backfilled() {
    let db = TestDb::empty().await.unwrap();
    let mut client = db.connect().await.unwrap();
    client.batch_execute(LEGACY_SHAPE).await.unwrap();
    migrate::migrate(&mut client).await.unwrap();
    let once = dump(&db);
    // Applying again, through the runner or raw, changes nothing.
    assert!(migrate::migrate(&mut client).await.unwrap().is_empty());
    apply_files_raw(&db).await;
    assert_same(&dump(&db), &once);

    let rows = client
        .query(
            "SELECT p.name, f.file_path, f.file_type, f.version, f.seq, f.is_current_version,
                    f.content_hash = encode(sha256(convert_to(f.content, 'UTF8')), 'hex'),
                    f.created_by = p.owner_id, f.size_bytes = octet_length(f.content)
             FROM public.project_files f JOIN public.projects p ON p.id = f.project_id
             ORDER BY p.name, f.seq",
            &[],
        )
        .await
        .unwrap();
    // (project, path, type, version, seq, is head, hash right, author is owner, size right)
    type Backfilled = (String, String, String, i32, i64, bool, bool, bool, bool);
    let got: Vec<Backfilled> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5), r.get(6), r.get(7), r.get(8)))
        .collect();
    let row = |p: &str, path: &str, t: &str, seq: i64| {
        (p.to_owned(), path.to_owned(), t.to_owned(), 1, seq, true, true, true, true)
    };
    assert_eq!(
        got,
        vec![
            row("alice app", "package.json", "json", 1),
            // `tsx` is not a file type: inferred from the extension. A missing type likewise.
            row("alice app", "src/main.tsx", "typescript", 2),
            row("alice app", "README.md", "markdown", 3),
            row("bob app", "index.html", "html", 1),
        ]
    );
    let seqs: Vec<(String, i64)> = client
        .query("SELECT name, seq FROM public.projects ORDER BY name", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(seqs, vec![("alice app".into(), 3), ("bob app".into(), 1)]);
    let nulls: i64 = client
        .query_one(
            "SELECT count(*) FROM public.project_files_current
             WHERE file_path IS NULL OR file_type IS NULL OR created_by IS NULL OR seq IS NULL OR content_hash IS NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(nulls, 0, "no NULLs in required columns of current rows");
    let owners: i64 =
        client.query_one("SELECT count(*) FROM public.project_members WHERE role = 'owner'", &[]).await.unwrap().get(0);
    assert_eq!(owners, 2, "each legacy owner became a member");
    // The old frontend still reads through the compatibility view.
    let legacy: Vec<(String, String)> = client
        .query("SELECT path, type FROM public.legacy_project_files ORDER BY path", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(legacy[0], ("README.md".into(), "markdown".into()));
    assert_eq!(legacy.len(), 4);

    // The RPCs continue the backfilled history: version 2 at the project's next seq.
    let result: serde_json::Value = client
        .query_one(
            "SELECT set_config('request.jwt.claims', '{\"role\":\"authenticated\",\"sub\":\"a0000000-0000-4000-8000-000000000001\"}', false),
                    public.upsert_project_file('c0000000-0000-4000-8000-000000000001', 'README.md', '# alice 2', 'markdown', 1)",
            &[],
        )
        .await
        .unwrap()
        .get(1);
    assert_eq!((result["version"].as_i64(), result["seq"].as_i64()), (Some(2), Some(4)));
}

#[tokio::test]
async fn snapshots_stored_before_their_records_are_recorded_signed_for_a_week() {
    let db = TestDb::empty().await.unwrap();
    let client = db.connect().await.unwrap();
    let (before, records): (Vec<&migrate::Migration>, Vec<_>) =
        migrate::all().partition(|m| m.name != "0009_snapshots.sql");
    for m in before {
        client.batch_execute(m.sql).await.unwrap_or_else(|e| panic!("{}: {e:?}", m.name));
    }
    let (owner, project, gone) = (fsync_testkit::new_id(), fsync_testkit::new_id(), fsync_testkit::new_id());
    client.execute("INSERT INTO public.user_profiles (id) VALUES ($1)", &[&owner]).await.unwrap();
    let insert = "INSERT INTO public.projects (id, name, owner_id) VALUES ($1, 'p', $2)";
    client.execute(insert, &[&project, &owner]).await.unwrap();
    for (bucket, name) in [
        ("project-snapshots", format!("{project}/seq-3.zip")),
        ("project-snapshots", format!("{project}/seq-3.json")),
        ("project-snapshots", format!("{project}/seq-5.zip")),
        ("project-snapshots", format!("{project}/notes.zip")),
        ("project-snapshots", format!("{gone}/seq-6.zip")),
        ("project-files", format!("{project}/seq-7.zip")),
    ] {
        client
            .execute("INSERT INTO storage.objects (bucket_id, name) VALUES ($1, $2)", &[&bucket, &name])
            .await
            .unwrap();
    }
    client.batch_execute(records[0].sql).await.unwrap();
    let now = fsync_testkit::now_s() as i64;
    let statement = "SELECT project_id, snapshot_id, seq, signed_until_s, superseded_at_s
                     FROM fsync.project_snapshots ORDER BY seq";
    let found: Vec<(uuid::Uuid, String, i64, i64, Option<i64>)> = client
        .query(statement, &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get::<_, i64>(3) - now, r.get(4)))
        .collect();
    assert_eq!(
        found.iter().map(|(p, id, seq, ..)| (*p, id.as_str(), *seq)).collect::<Vec<_>>(),
        [(project, "seq-3", 3), (project, "seq-5", 5), (gone, "seq-6", 6)]
    );
    let week = 7 * 24 * 3600;
    assert!(found.iter().all(|(_, _, _, left, _)| (week - 60..=week + 60).contains(left)), "{found:?}");
    let superseded: Vec<Option<i64>> = found.iter().map(|f| f.4.map(|at| if at == 0 { 0 } else { at - now })).collect();
    assert!(
        matches!(superseded[..], [Some(-60..=60), None, Some(0)]),
        "superseded from now, never, since ever: {superseded:?}"
    );
    let once = dump(&db);
    client.batch_execute(records[0].sql).await.unwrap();
    assert_same(&dump(&db), &once);

    // Deleting a project supersedes its snapshots.
    client.execute("DELETE FROM public.projects WHERE id = $1", &[&project]).await.unwrap();
    let statement = "SELECT count(*) FROM fsync.project_snapshots WHERE project_id = $1 AND superseded_at_s = 0";
    let superseded: i64 = client.query_one(statement, &[&project]).await.unwrap().get(0);
    assert_eq!(superseded, 2);
}

#[tokio::test]
async fn concurrent_migrations_are_race_safe() {
    // Roles are cluster-wide: several databases migrating at once must not trip over each other,
    // and several instances migrating one database at once must apply everything exactly once.
    let dbs = vec![TestDb::empty().await.unwrap(), TestDb::empty().await.unwrap(), TestDb::empty().await.unwrap()];
    let mut tasks = Vec::new();
    for db in &dbs {
        for _ in 0..2 {
            let url = db.url.clone();
            tasks.push(tokio::spawn(async move {
                let (mut client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
                tokio::spawn(connection);
                migrate::migrate(&mut client).await.map(|applied| applied.len())
            }));
        }
    }
    let mut applied = 0;
    for task in tasks {
        applied += task.await.unwrap().expect("migrate");
    }
    assert_eq!(applied, dbs.len() * migrate::all().count(), "each database migrated exactly once");
}

#[tokio::test]
async fn sql_and_rust_agree_on_limits_types_paths_and_hashes() {
    let db = TestDb::migrated().await.unwrap();
    let client = db.connect().await.unwrap();
    let row = client
        .query_one(
            "SELECT fsync.max_path_bytes(), fsync.max_content_bytes(), fsync.max_bulk_bytes(),
                    fsync.max_bulk_files(), fsync.max_inline_event_bytes(), fsync.file_types()",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i32>(0) as usize, limits::MAX_PATH_BYTES);
    assert_eq!(row.get::<_, i32>(1) as usize, limits::MAX_CONTENT_BYTES);
    assert_eq!(row.get::<_, i32>(2) as usize, limits::MAX_BULK_BYTES);
    assert_eq!(row.get::<_, i32>(3) as usize, limits::MAX_BULK_FILES);
    assert_eq!(row.get::<_, i32>(4) as usize, limits::MAX_INLINE_EVENT_BYTES);
    assert_eq!(row.get::<_, Vec<String>>(5), limits::FILE_TYPES);

    let long = "é".repeat(limits::MAX_PATH_BYTES / 2 + 1);
    let paths = [
        "ok.txt",
        "src/deep/ok.ts",
        ".env",
        "..a",
        "",
        "/abs",
        "a\\b",
        "a//b",
        "a/",
        "./x",
        "x/..",
        "a\u{1}",
        "a\u{7f}",
        "a\u{85}",
        "a\u{9f}",
        "a\u{a0}",
        "ファイル",
        long.as_str(),
    ];
    for path in paths {
        let sql: Option<String> = client.query_one("SELECT fsync.path_problem($1)", &[&path]).await.unwrap().get(0);
        let rust = fsync_protocol::check_path(path).err().map(|p| p.to_string());
        assert_eq!(sql, rust, "{path:?}");
    }
    for path in [
        "a.ts",
        "src/App.TSX",
        "x.mjs",
        "README.md",
        "a/b.c/d",
        "noext",
        ".env",
        "a/.env",
        "dir.d/",
        "a.",
        "a..ts",
        "data.YML",
        "weird.tar.gz",
        "ファイル.py",
        "a/b.sh",
    ] {
        let sql: String = client.query_one("SELECT fsync.infer_file_type($1)", &[&path]).await.unwrap().get(0);
        assert_eq!(sql, fsync_protocol::limits::infer_file_type(path), "{path:?}");
    }
    for content in ["", "hello", "ünïcödé ✓", "line\nbreak\r\n"] {
        let sql: String = client.query_one("SELECT fsync.content_hash($1)", &[&content]).await.unwrap().get(0);
        assert_eq!(sql, fsync_protocol::content_hash(content), "{content:?}");
    }
}
