//! Corners of the PostgREST surface the fsync API itself does not use: void functions, a schema
//! reload, and a database that went away.

use crate::fixture;
use fsync_store::data::{RpcCall, Store};
use fsync_store::RequestAuth;
use serde_json::json;

#[tokio::test]
async fn a_void_function_answers_204_after_a_schema_reload() {
    let f = fixture().await;
    let client = f.app.db.connect().await.unwrap();
    client
        .batch_execute(
            "CREATE FUNCTION public.ping(p_note text) RETURNS void LANGUAGE sql AS $$ SELECT $$;
             GRANT EXECUTE ON FUNCTION public.ping(text) TO authenticated;",
        )
        .await
        .unwrap();
    let (status, _) = f.app.rpc(Some(&f.owner_token), "ping", json!({"p_note": "x"})).await;
    assert_eq!(status, 404, "not in the schema cache yet");
    f.app.store.reload_schema().await.unwrap();
    let (status, body) = f.app.rpc(Some(&f.owner_token), "ping", json!({"p_note": "x"})).await;
    assert_eq!((status.as_u16(), body), (204, serde_json::Value::Null));
}

#[tokio::test]
async fn a_closed_database_connection_is_503_not_500() {
    let f = fixture().await;
    // A store whose one connection is cut under it.
    let (client, connection) = tokio_postgres::connect(&f.app.db.url, tokio_postgres::NoTls).await.unwrap();
    let driver = tokio::spawn(connection);
    driver.abort();
    let _ = driver.await;
    let error = client.query_one("SELECT 1", &[]).await.unwrap_err();
    assert!(error.is_closed());
    let mapped = fsync_reference::pg::db_error(error, true);
    assert_eq!((mapped.status.as_u16(), mapped.body.code.as_str()), (503, "PGRST000"));

    // And through the store: every pooled connection terminated, then a call.
    let admin = f.app.db.connect().await.unwrap();
    admin
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()",
            &[],
        )
        .await
        .unwrap();
    let auth =
        RequestAuth { role: "service_role".into(), claims: fsync_testkit::claims(json!({"role": "service_role"})) };
    let call = RpcCall {
        function: "list_changes_since".into(),
        args: fsync_testkit::claims(json!({"project_uuid": f.project, "since_seq": 0})),
        read_only: false,
    };
    // The pool notices dead connections; a call either reconnects and succeeds or says 503.
    match f.app.store.rpc(&auth, call).await {
        Ok(_) => {}
        Err(e) => assert_eq!(e.status.as_u16(), 503, "{e:?}"),
    }
}

#[tokio::test]
async fn health_fails_when_the_database_is_gone() {
    let db = fsync_testkit::TestDb::migrated().await.unwrap();
    let store = fsync_reference::PgStore::connect(&db.url).await.unwrap();
    store.health().await.expect("healthy while the database is there");
    let admin = fsync_testkit::TestDb::empty().await.unwrap();
    let client = admin.connect().await.unwrap();
    client.batch_execute(&format!("DROP DATABASE \"{}\" WITH (FORCE)", db.name)).await.unwrap();
    let error = store.health().await.expect_err("the database is gone");
    assert_eq!(error.status.as_u16(), 503, "{error:?}");
}
