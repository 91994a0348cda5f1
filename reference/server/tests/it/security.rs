//! The security review as tests (plan 4.4), read from the catalog of a migrated database, so that
//! a function or a table added later is held to the same rules without anyone listing it here.

use fsync_testkit::TestDb;

/// What a function's body may call to know its caller; a SECURITY DEFINER function runs with its
/// owner's rights and must decide itself who may do what.
const CALLER_CHECKS: &[&str] =
    &["fsync.require_access(", "fsync.access_role(", "auth.role()", "auth.uid()", "auth.jwt()", "fsync.writer("];

#[tokio::test]
async fn every_security_definer_function_pins_its_search_path_and_checks_its_caller() {
    let db = TestDb::migrated().await.expect("a migrated database");
    let client = db.connect().await.unwrap();
    let rows = client
        .query(
            "SELECT n.nspname || '.' || p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')',
                    coalesce(array_to_string(p.proconfig, ','), ''), p.prosrc,
                    p.prorettype = 'trigger'::regtype
             FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
             WHERE p.prosecdef AND n.nspname NOT IN ('pg_catalog', 'information_schema')
             ORDER BY 1",
            &[],
        )
        .await
        .unwrap();
    assert!(rows.len() >= 10, "the RPCs are SECURITY DEFINER: {} found", rows.len());
    let mut unpinned = Vec::new();
    let mut unchecked = Vec::new();
    for row in &rows {
        let (name, config, body, trigger): (String, String, String, bool) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        if !config.split(',').any(|setting| setting == "search_path=\"\"" || setting == "search_path=") {
            unpinned.push(format!("{name} [{config}]"));
        }
        // A trigger function cannot be called, only fired by a write that was itself decided
        // (the API roles write nothing directly: `direct_table_writes_are_refused_even_to_owners`).
        if !trigger && !CALLER_CHECKS.iter().any(|check| body.contains(check)) {
            unchecked.push(name);
        }
    }
    assert!(unpinned.is_empty(), "SECURITY DEFINER without search_path = '': {unpinned:#?}");
    assert!(unchecked.is_empty(), "SECURITY DEFINER that never looks at its caller: {unchecked:#?}");
}

#[tokio::test]
async fn nothing_the_api_roles_can_read_escapes_row_level_security() {
    let db = TestDb::migrated().await.expect("a migrated database");
    let client = db.connect().await.unwrap();
    let rows = client
        .query(
            "SELECT n.nspname || '.' || c.relname, c.relkind::text, c.relrowsecurity,
                    coalesce('security_invoker=true' = ANY(c.reloptions), false)
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
               AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
               AND (has_table_privilege('anon', c.oid, 'SELECT')
                    OR has_table_privilege('authenticated', c.oid, 'SELECT'))
             ORDER BY 1",
            &[],
        )
        .await
        .unwrap();
    let names: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    assert!(names.contains(&"public.project_files".to_owned()), "{names:?}");
    let mut open = Vec::new();
    for row in &rows {
        let (name, kind, rls, invoker): (String, String, bool, bool) = (row.get(0), row.get(1), row.get(2), row.get(3));
        let guarded = match kind.as_str() {
            "r" | "p" => rls,
            // A view reads its tables as the caller only with security_invoker; otherwise as its
            // owner, past their policies.
            "v" => invoker,
            _ => false,
        };
        if !guarded {
            open.push(format!("{name} (relkind {kind})"));
        }
    }
    assert!(open.is_empty(), "readable by anon or authenticated without row level security: {open:#?}");
}

/// Topic matching is the same in every policy: every `realtime.messages` policy decides through
/// `fsync.can_read_topic` or `fsync.can_write_topic`, and both find a topic's project with the
/// one matcher, `fsync.topic_project`; every `project-files` storage policy finds an object's
/// project with `fsync.object_project`. A policy added later that matches topics or names its own
/// way fails here.
#[tokio::test]
async fn every_policy_matches_topics_and_object_names_the_same_way() {
    let db = TestDb::migrated().await.expect("a migrated database");
    let client = db.connect().await.unwrap();
    let policies = client
        .query(
            "SELECT tablename, policyname, coalesce(qual, '') || ' ' || coalesce(with_check, '')
             FROM pg_policies WHERE schemaname IN ('realtime', 'storage') ORDER BY 1, 2",
            &[],
        )
        .await
        .unwrap();
    let mut topic_policies = 0;
    for row in &policies {
        let (table, name, text): (String, String, String) = (row.get(0), row.get(1), row.get(2));
        if table == "messages" {
            topic_policies += 1;
            assert!(
                text.contains("fsync.can_read_topic(") || text.contains("fsync.can_write_topic("),
                "{name} decides topics its own way: {text}"
            );
            assert!(!text.contains("~") && !text.contains("LIKE"), "{name} matches topic text itself: {text}");
        } else if text.contains("project-files") {
            assert!(text.contains("fsync.object_project(name)"), "{name} finds the project its own way: {text}");
        }
    }
    assert_eq!(topic_policies, 2, "the read and the write policy");
    for function in ["can_read_topic", "can_write_topic"] {
        let body: String = client
            .query_one(
                "SELECT p.prosrc FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                 WHERE n.nspname = 'fsync' AND p.proname = $1",
                &[&function],
            )
            .await
            .unwrap()
            .get(0);
        assert!(body.contains("fsync.topic_project(p_topic)"), "fsync.{function} matches topics its own way: {body}");
    }
}
