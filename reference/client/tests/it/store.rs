//! The frontend store (plan 1.5): versions remembered and sent as expected_version; generation
//! through the bulk RPC.

use crate::{client_for, setup};
use fsync_client::{ClientError, FileState, ProjectStore, Writes};

#[tokio::test]
async fn the_store_sends_what_it_knows_and_a_stale_store_gets_a_conflict() {
    let (app, owner, project, client) = setup().await;
    let mut alice = ProjectStore::new(client.clone(), project);
    alice.load().await.unwrap();
    let mut bob = ProjectStore::new(client_for(&app, app.user_token(owner)), project);
    bob.load().await.unwrap();

    // Unknown path after load: create-only.
    assert_eq!(alice.expected_version("a.ts"), Some(0));
    alice.save("a.ts", "alice 1", "typescript").await.unwrap();
    assert_eq!(alice.file("a.ts"), Some(FileState { version: 1, deleted: false }));
    alice.save("a.ts", "alice 2", "typescript").await.unwrap();
    assert_eq!(alice.expected_version("a.ts"), Some(2));

    // Bob never saw a.ts: his create-only write conflicts instead of overwriting Alice.
    let err = bob.save("a.ts", "bob", "typescript").await.unwrap_err();
    assert!(matches!(err, ClientError::Conflict { .. }), "{err}");
    assert_eq!(bob.expected_version("a.ts"), Some(0), "a conflict does not teach the store a version");
    bob.refresh().await.unwrap();
    assert_eq!(bob.last_seq(), 2);
    assert_eq!(bob.save("a.ts", "bob", "typescript").await.unwrap().version, 3);

    // Deletes carry the version too, and the tombstone's version is remembered.
    assert!(matches!(alice.delete("a.ts").await, Err(ClientError::Conflict { .. })));
    alice.refresh().await.unwrap();
    alice.delete("a.ts").await.unwrap();
    assert_eq!(alice.file("a.ts"), Some(FileState { version: 4, deleted: true }));
    // Re-creating after the delete sends the tombstone's version.
    assert_eq!(alice.save("a.ts", "again", "typescript").await.unwrap().version, 5);
}

#[tokio::test]
async fn generation_goes_through_one_bulk() {
    let (app, _owner, project, client) = setup().await;
    let mut store = ProjectStore::new(client, project);
    store.load().await.unwrap();
    let files = [
        ("package.json", "json", "{}"),
        ("src/main.tsx", "typescript", "export {}"),
        ("README.md", "markdown", "# generated"),
    ];
    let result = store.generate_project_structure(&files).await.unwrap();
    assert_eq!(result.seq, 1, "one seq for the whole generation");
    for (path, _, _) in files {
        assert_eq!(store.file(path), Some(FileState { version: 1, deleted: false }));
    }
    // Regenerating with one change: the store's versions make it a valid compare-and-set.
    let files2 = [
        ("package.json", "json", "{\"v\":2}"),
        ("src/main.tsx", "typescript", "export {}"),
        ("README.md", "markdown", "# generated"),
    ];
    let again = store.generate_project_structure(&files2).await.unwrap();
    assert_eq!(again.seq, 2);
    assert_eq!(store.file("package.json").unwrap().version, 2);
    let client = app.db.connect().await.unwrap();
    let events: i64 = client
        .query_one(
            "SELECT count(*) FROM realtime.messages WHERE event = 'bulk:apply' AND topic = $1",
            &[&format!("project:{project}")],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(events, 2, "one bulk:apply per generation");
}

#[test]
fn the_flag_picks_the_writes_and_is_off_unless_set() {
    assert_eq!(Writes::from_flag(None), Writes::Table, "the plan ships the flag off");
    assert_eq!(Writes::from_flag(Some("")), Writes::Table);
    assert_eq!(Writes::from_flag(Some("0")), Writes::Table);
    assert_eq!(Writes::from_flag(Some(" On ")), Writes::Rpc);
    assert_eq!(Writes::from_flag(Some("true")), Writes::Rpc);
}

#[tokio::test]
async fn with_the_flag_off_the_store_writes_the_table_and_still_learns_each_version() {
    let (app, owner, project, client) = setup().await;
    let mut old = ProjectStore::with_writes(client.clone(), project, Writes::Table);
    old.load().await.unwrap();
    let saved = old.save("a.ts", "one", "typescript").await.unwrap();
    assert_eq!((saved.version, saved.seq, saved.noop), (1, 1, false));
    assert_eq!(saved.content_hash, fsync_protocol::content_hash("one"));
    // Last writer wins, as the old frontend wrote: a newer head is overwritten, not refused.
    let mut new = ProjectStore::new(client_for(&app, app.user_token(owner)), project);
    new.load().await.unwrap();
    assert_eq!(new.save("a.ts", "two", "typescript").await.unwrap().version, 2);
    assert_eq!(old.save("a.ts", "three", "typescript").await.unwrap().version, 3, "no conflict on the old path");
    assert!(old.save("a.ts", "three", "typescript").await.unwrap().noop, "the same content again writes nothing");
    // Generation: one table write, a versioned write (and a seq) per file.
    let generated =
        old.generate_project_structure(&[("b.md", "markdown", "b"), ("c.json", "json", "{}")]).await.unwrap();
    assert_eq!(generated.files.iter().map(|f| f.version).collect::<Vec<_>>(), [1, 1]);
    assert_eq!(generated.seq, 5);
    // Deletes leave tombstones; a second delete is a no-op, an unknown path is not found.
    let deleted = old.delete("b.md").await.unwrap();
    assert_eq!((deleted.version, deleted.seq, deleted.noop), (2, 6, false));
    assert!(old.delete("b.md").await.unwrap().noop);
    assert_eq!(old.delete("never.txt").await.unwrap_err().status(), Some(404));

    // The migrated store sees every one of those as a version, and the RPCs agree.
    new.refresh().await.unwrap();
    assert_eq!(new.file("a.ts"), Some(FileState { version: 3, deleted: false }));
    assert_eq!(new.file("b.md"), Some(FileState { version: 2, deleted: true }));
    assert_eq!(new.last_seq(), 6);
    let current = client.list_current_files(project).await.unwrap();
    let names: Vec<(&str, i32)> = current.iter().map(|f| (f.file_path.as_str(), f.version)).collect();
    assert_eq!(names, [("a.ts", 3), ("c.json", 1)]);
}
