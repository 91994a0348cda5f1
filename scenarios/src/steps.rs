//! What each step does, and how its outcome reads: `ok version 2 seq 3`, `noop version 2`,
//! `error 409 PT409: ...`, `running`, `stopped`, `ok 1234 bytes`, `quiet at seq 7`.

use crate::case::{Action, BulkEntry, Expected, Step};
use crate::run::{Session, World};
use crate::settle;
use crate::stack::Stack;
use fsync_client::Reply;
use fsync_protocol::hash::hex_sha256;
use fsync_protocol::snapshot::SessionStatus;
use serde_json::{json, Value};

impl<S: Stack> World<'_, S> {
    /// Takes one step; its outcome as the transcript shows it.
    pub async fn step(&mut self, step: &Step) -> String {
        match &step.action {
            Action::Upsert { actor, path, content, file_type, expect } if !self.flags.rpc => {
                self.table_upsert(actor, path, content, file_type, *expect).await
            }
            Action::Delete { actor, path, expect } if !self.flags.rpc => self.table_delete(actor, path, *expect).await,
            Action::Upsert { actor, path, content, file_type, expect } => {
                let mut args = json!({"project_uuid": self.project, "p_file_path": path, "p_content": content, "p_file_type": file_type});
                expected(&mut args, *expect);
                self.write(actor, "upsert_project_file", args).await
            }
            Action::Delete { actor, path, expect } => {
                let mut args = json!({"project_uuid": self.project, "p_file_path": path});
                expected(&mut args, *expect);
                self.write(actor, "delete_project_file", args).await
            }
            Action::Bulk { actor, entries } => self.bulk(actor, entries).await,
            Action::Binary { actor, path, width, height } => self.binary(actor, path, *width, *height).await,
            Action::Sign { actor, path, expires, link } => self.sign(actor, path, expires.as_secs(), link).await,
            Action::Fetch { link } => self.fetch(link).await,
            Action::Read { actor } => self.read(actor).await,
            Action::StartSession { session, actor, server, held, deaf } => {
                if *deaf {
                    match self.launcher() {
                        Ok(launcher) => launcher.deafen_next(),
                        Err(e) => return e,
                    }
                }
                self.start(session, actor, *server, *held).await
            }
            Action::WaitGone { session } => self.wait_gone(session).await,
            Action::RemoveMember { actor, member } => {
                let args = json!({"project_uuid": self.project, "p_user_id": self.users[member]});
                let reply = self.api(0).rpc(Some(self.token(actor)), "remove_project_member", args).await;
                outcome(reply, |_| "ok".into())
            }
            Action::Release { .. } => match self.launcher() {
                Ok(launcher) => {
                    launcher.release();
                    "released".into()
                }
                Err(e) => e,
            },
            Action::WaitFor { session, status } => self.wait_for(session, *status).await,
            Action::StopSession { session } => self.stop(session).await,
            Action::ContainerUpsert { session, path, content } => {
                let token = self.container_token(self.sessions[session].id);
                let args = json!({"project_uuid": self.project, "p_file_path": path, "p_content": content, "p_file_type": "text"});
                outcome(self.api(0).rpc(Some(&token), "upsert_project_file", args).await, written)
            }
            Action::CutAgents => {
                self.stack.cut_agents(true).await.map_or_else(|e| format!("failed: {e}"), |()| "cut".into())
            }
            Action::HealAgents => {
                self.stack.cut_agents(false).await.map_or_else(|e| format!("failed: {e}"), |()| "healed".into())
            }
            Action::SetFlag { flag, on } => {
                flag.set(&mut self.flags, *on);
                match (flag.restarts_servers(), *on) {
                    (true, _) => self.restart().await,
                    (false, true) => "clients write through the RPCs (rpc on)".into(),
                    (false, false) => "clients write the table legacy_project_files (rpc off)".into(),
                }
            }
            Action::Wait(duration) => {
                tokio::time::sleep(*duration).await;
                "waited".into()
            }
            Action::Quiesce => settle::quiesce(self).await,
        }
    }

    async fn write(&self, actor: &str, function: &str, args: Value) -> String {
        outcome(self.api(0).rpc(Some(self.token(actor)), function, args).await, written)
    }

    /// An upsert as the unmigrated frontend makes it (`.upsert(row, { onConflict })` on
    /// `legacy_project_files`: last writer wins); the version and seq it got, read back.
    async fn table_upsert(&self, actor: &str, path: &str, content: &str, file_type: &str, expect: Expected) -> String {
        if expect != Expected::Any {
            return "refused here: a table write carries no expected version".into();
        }
        let row = json!({"project_id": self.project, "path": path, "type": file_type, "content": content});
        let headers = [("content-type", "application/json"), ("prefer", "resolution=merge-duplicates")];
        let target = "/rest/v1/legacy_project_files?on_conflict=project_id,path";
        let api = self.api(0);
        let answer = api.request(http::Method::POST, target, Some(self.token(actor)), &headers, row.to_string()).await;
        self.table_outcome(actor, path, answer).await
    }

    /// A delete as the unmigrated frontend makes it (`.delete().eq(..).eq(..)`).
    async fn table_delete(&self, actor: &str, path: &str, expect: Expected) -> String {
        if expect != Expected::Any {
            return "refused here: a table write carries no expected version".into();
        }
        let (project, path_q) = (self.project, fsync_client::transport::encode(path));
        let target = format!("/rest/v1/legacy_project_files?project_id=eq.{project}&path=eq.{path_q}");
        let api = self.api(0);
        let answer = api.request(http::Method::DELETE, &target, Some(self.token(actor)), &[], Vec::new()).await;
        self.table_outcome(actor, path, answer).await
    }

    /// A table write answers without versions: on success, `ok version V seq S (table write)`
    /// with the path's head as `list_changes_since` shows it.
    async fn table_outcome(
        &self,
        actor: &str,
        path: &str,
        answer: Result<fsync_client::Download, fsync_client::transport::TransportError>,
    ) -> String {
        match answer {
            Ok(answer) if (200..300).contains(&answer.status) => {}
            Ok(answer) => {
                let body = serde_json::from_slice(&answer.bytes).unwrap_or(Value::Null);
                return error(&Reply { status: answer.status, body });
            }
            Err(e) => return format!("no answer: {e}"),
        }
        let args = json!({"project_uuid": self.project, "since_seq": 0});
        let reply = self.api(0).rpc(Some(self.token(actor)), "list_changes_since", args).await;
        outcome(reply, |body| {
            let change = body["changes"].as_array().and_then(|c| c.iter().find(|c| c["file_path"] == path));
            match change {
                Some(c) => format!("ok version {} seq {} (table write)", c["version"], c["seq"]),
                None => format!("no change of {path} in list_changes_since"),
            }
        })
    }

    async fn bulk(&self, actor: &str, entries: &[BulkEntry]) -> String {
        let files: Vec<Value> = entries
            .iter()
            .map(|entry| match entry {
                BulkEntry::Upsert { path, content, file_type, expect } => {
                    let mut file = json!({"file_path": path, "file_type": file_type, "content": content});
                    expected(&mut file, *expect);
                    file
                }
                BulkEntry::Delete { path, expect } => {
                    let mut file = json!({"file_path": path, "delete": true});
                    expected(&mut file, *expect);
                    file
                }
            })
            .collect();
        let args = json!({"project_uuid": self.project, "files": files});
        outcome(self.api(0).rpc(Some(self.token(actor)), "bulk_upsert_project_files", args).await, bulk_written)
    }

    /// A generated PNG into `project-files/{project}/{sha256}`, then recorded as the file.
    async fn binary(&mut self, actor: &str, path: &str, width: u32, height: u32) -> String {
        let bytes = fsync_fixtures::image::png(width, height, u64::from(width) << 16 | u64::from(height));
        let hash = hex_sha256(&bytes);
        let api = self.api(0);
        let name = format!("{}/{hash}", self.project);
        match api.upload(Some(self.token(actor)), "project-files", &name, bytes.clone(), true).await {
            Ok(reply) if reply.is_success() => {}
            uploaded => return format!("upload {}", outcome(uploaded, |_| "ok".into())),
        }
        self.binaries.insert(path.to_owned(), hash.clone());
        let args =
            json!({"project_uuid": self.project, "p_file_path": path, "p_content_hash": hash, "p_file_type": "image"});
        let recorded = outcome(api.rpc(Some(self.token(actor)), "upsert_project_binary", args).await, written);
        format!("{recorded} ({} bytes)", bytes.len())
    }

    async fn sign(&mut self, actor: &str, path: &str, expires_s: u64, link: &str) -> String {
        let Some(hash) = self.binaries.get(path) else { return format!("no binary {path} was written in this case") };
        let name = format!("{}/{hash}", self.project);
        let reply = self.api(0).sign(Some(self.token(actor)), "project-files", &name, expires_s).await;
        if let Ok(Reply { status: 200, body }) = &reply {
            if let Some(url) = body.get("signedURL").and_then(Value::as_str) {
                self.links.insert(link.to_owned(), url.to_owned());
                return "signed".into();
            }
        }
        outcome(reply, |_| "no signedURL in the answer".into())
    }

    async fn fetch(&self, link: &str) -> String {
        match self.api(0).download_signed(&self.links[link]).await {
            Ok(d) if d.status == 200 => format!("ok {} bytes", d.bytes.len()),
            Ok(d) => error(&Reply { status: d.status, body: serde_json::from_slice(&d.bytes).unwrap_or(Value::Null) }),
            Err(e) => format!("no answer: {e}"),
        }
    }

    async fn read(&self, actor: &str) -> String {
        let reply =
            self.api(0).rpc(Some(self.token(actor)), "list_current_files", json!({"project_uuid": self.project})).await;
        outcome(reply, |body| format!("ok {} files", body.as_array().map_or(0, Vec::len)))
    }

    async fn start(&mut self, session: &str, actor: &str, server: usize, held: bool) -> String {
        if held {
            match self.launcher() {
                Ok(launcher) => launcher.hold(),
                Err(e) => return e,
            }
        }
        let reply = match self.api(server).create_session(self.token(actor), self.project).await {
            Ok(reply) if reply.status == 201 => reply,
            other => return outcome(other, |_| "unexpected success".into()),
        };
        let Some(id) = reply.uuid("id") else { return format!("no session id in {}", reply.body) };
        self.transcript.name(id, session);
        self.sessions.insert(session.to_owned(), Session { id, starter: actor.to_owned(), server });
        if !held {
            return "started".into();
        }
        match self.wait_until_held().await {
            Ok(()) => "started, its agent held".into(),
            Err(e) => format!("started, but {e}"),
        }
    }

    /// The stack's launcher, which holds, deafens and watches agents, or why there is none.
    fn launcher(&self) -> Result<&crate::hold::HeldLauncher, String> {
        let name = self.stack.name();
        self.stack.launcher().ok_or_else(|| format!("the {name} stack cannot hold, deafen or watch agents"))
    }

    /// Waits until the orchestrator has built the snapshot and asked for the agent.
    async fn wait_until_held(&self) -> Result<(), String> {
        let clock = self.stack.clock();
        let deadline = clock.now() + self.stack.patience();
        while self.launcher()?.waiting() == 0 {
            if clock.now() >= deadline {
                return Err("no launch was asked for".into());
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        Ok(())
    }

    async fn wait_for(&self, session: &str, status: SessionStatus) -> String {
        let s = &self.sessions[session];
        let clock = self.stack.clock();
        let api = self.api(s.server);
        match api.wait_session(self.token(&s.starter), s.id, status, self.stack.patience(), &*clock).await {
            Ok(view) => match (view.status, view.reason, view.snapshot_id) {
                (status, Some(reason), _) if status.is_final() => format!("{}: {reason}", status.as_str()),
                // Why it is behind depends on timing (silent, or its feed down): not shown.
                (SessionStatus::Behind, ..) => "behind".to_owned(),
                (status, _, Some(snapshot)) => format!("{}, hydrated from snapshot {snapshot}", status.as_str()),
                (status, _, None) => format!("{}, hydrated file by file", status.as_str()),
            },
            Err(e) => e,
        }
    }

    /// Waits until the session's agent has ended: the tree it held then.
    async fn wait_gone(&self, session: &str) -> String {
        let id = self.sessions[session].id;
        let launcher = match self.launcher() {
            Ok(launcher) => launcher,
            Err(e) => return e,
        };
        let clock = self.stack.clock();
        let deadline = clock.now() + self.stack.patience();
        loop {
            match launcher.gone(id) {
                Some(Ok(tree)) => {
                    let files: Vec<String> =
                        tree.iter().map(|(path, hash)| format!("{path} {}", crate::transcript::short(hash))).collect();
                    return format!("gone, holding {}", files.join(", "));
                }
                Some(Err(e)) => return format!("gone, but {e}"),
                None if clock.now() >= deadline => {
                    return format!("its agent still runs after {:?}", self.stack.patience())
                }
                None => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
            }
        }
    }

    async fn stop(&self, session: &str) -> String {
        let s = &self.sessions[session];
        let reply = self.api(s.server).stop_session(self.token(&s.starter), s.id).await;
        outcome(reply, |body| body.get("status").and_then(Value::as_str).unwrap_or("?").to_owned())
    }

    /// Restarts every server with the flags as they now are; waits for the observer to be back.
    async fn restart(&mut self) -> String {
        let joins = self.observer.as_ref().map_or(0, |o| o.joins());
        if let Err(e) = self.stack.restart(self.flags).await {
            return format!("restart failed: {e}");
        }
        match self.observer_back(joins).await {
            Ok(()) => format!(
                "servers restarted (snapshot-hydration {}, client-broadcast {})",
                on_off(self.flags.snapshot_hydration),
                on_off(self.flags.client_broadcast)
            ),
            Err(e) => format!("servers restarted, but {e}"),
        }
    }
}

fn on_off(on: bool) -> &'static str {
    if on {
        "on"
    } else {
        "off"
    }
}

fn expected(args: &mut Value, expect: Expected) {
    match expect {
        Expected::Any => {}
        Expected::New => args["expected_version"] = json!(0),
        Expected::Version(n) => args["expected_version"] = json!(n),
    }
}

/// A reply as an outcome: `ok ...` as `success` reads it, or the error.
fn outcome(
    reply: Result<Reply, fsync_client::transport::TransportError>,
    success: impl Fn(&Value) -> String,
) -> String {
    match reply {
        Ok(reply) if reply.is_success() => success(&reply.body),
        Ok(reply) => error(&reply),
        Err(e) => format!("no answer: {e}"),
    }
}

/// `ok version V seq S`, or `noop version V` for a write that changed nothing.
fn written(body: &Value) -> String {
    let version = body.get("version").map(Value::to_string).unwrap_or_default();
    if body.get("noop").and_then(Value::as_bool) == Some(true) {
        return format!("noop version {version}");
    }
    format!("ok version {version} seq {}", body.get("seq").map(Value::to_string).unwrap_or_default())
}

/// `ok seq S: a.txt v1, b.txt deleted v2`.
fn bulk_written(body: &Value) -> String {
    let files: Vec<String> = body["files"]
        .as_array()
        .map(|files| {
            files
                .iter()
                .map(|f| {
                    let path = f["file_path"].as_str().unwrap_or("?");
                    match (f["deleted"].as_bool(), f["noop"].as_bool()) {
                        (Some(true), _) => format!("{path} deleted v{}", f["version"]),
                        (_, Some(true)) => format!("{path} noop v{}", f["version"]),
                        _ => format!("{path} v{}", f["version"]),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    format!("ok seq {}: {}", body["seq"], files.join(", "))
}

/// `error STATUS CODE: MESSAGE` from PostgREST's or Storage's error body.
fn error(reply: &Reply) -> String {
    let text = |key: &str| reply.body.get(key).and_then(Value::as_str).map(str::to_owned);
    let code = text("code").or_else(|| text("error")).unwrap_or_default();
    let message = text("message").unwrap_or_else(|| reply.body.to_string());
    format!("error {} {code}: {message}", reply.status)
}
