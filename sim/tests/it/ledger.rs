//! The end-of-run checks on the database catch what they are for.

use fsync_model::state::{Access, Project};
use fsync_model::MemStore;
use fsync_sim::ledger::{check, Ack, Ledger};
use std::collections::BTreeMap;
use uuid::Uuid;

fn project(store: &MemStore) -> Uuid {
    let (id, owner) = (Uuid::from_u128(1), Uuid::from_u128(2));
    store.seed(|state| {
        let members = BTreeMap::from([(owner, Access::Owner)]);
        state.projects.insert(id, Project { name: "p".into(), owner, seq: 0, members });
    });
    id
}

#[test]
fn an_acknowledged_write_the_database_lacks_is_caught() {
    let store = MemStore::new();
    let project = project(&store);
    let ledger = Ledger::default();
    assert!(check(&store, &ledger, &[project]).is_empty(), "an empty run holds");
    ledger.record(Ack {
        editor: "e".into(),
        project,
        seq: 1,
        entries: vec![("a.ts".into(), Some("x".into()))],
        cas: None,
    });
    let found = check(&store, &ledger, &[project]);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].invariant, "2 no acknowledged write is lost");
}

#[test]
fn two_winners_of_one_compare_and_set_are_caught() {
    let store = MemStore::new();
    let project = project(&store);
    let ledger = Ledger::default();
    for editor in ["e1", "e2"] {
        let cas = Some(("a.ts".to_owned(), 3, 4));
        ledger.record(Ack { editor: editor.into(), project, seq: 0, entries: vec![], cas });
    }
    let found = check(&store, &ledger, &[project]);
    assert!(found.iter().any(|v| v.detail.contains("both replaced")), "{found:?}");
    let wrong = Ledger::default();
    wrong.record(Ack { editor: "e".into(), project, seq: 0, entries: vec![], cas: Some(("a.ts".into(), 3, 7)) });
    assert!(check(&store, &wrong, &[project]).iter().any(|v| v.detail.contains("answered v7")));
}

#[test]
fn a_seq_gap_is_caught() {
    let store = MemStore::new();
    let project = project(&store);
    store.seed(|state| state.projects.get_mut(&project).expect("seeded").seq = 2);
    let found = check(&store, &Ledger::default(), &[project]);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].invariant.starts_with("5 seq is gapless"));
}
