//! Runs one case on one stack: the people and the project are set up through the public API,
//! each step is taken in order and its outcome written down (and held to its `=>` expectation),
//! then the world is left to settle and the project, the events heard and every session's tree
//! close the transcript.

use crate::case::{Case, Flags, Role, Step};
use crate::observer::Observer;
use crate::settle;
use crate::stack::Stack;
use crate::transcript::Transcript;
use fsync_client::Api;
use fsync_protocol::jwt::{self, Secret};
use fsync_reference::config::{service_role_key, DEV_JWT_SECRET};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use uuid::Uuid;

/// What a run wrote and which expectations it missed.
#[derive(Debug)]
pub struct Run {
    pub transcript: String,
    pub mismatches: Vec<Mismatch>,
}

/// A step whose outcome did not begin with what the case expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    pub line: usize,
    pub step: String,
    pub expected: String,
    pub actual: String,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}\n    expected: {}\n    actual:   {}", self.line, self.step, self.expected, self.actual)
    }
}

/// A session the case started.
#[derive(Debug, Clone)]
pub struct Session {
    pub id: Uuid,
    pub starter: String,
    pub server: usize,
}

/// Everything a run knows about its world.
pub struct World<'a, S: Stack> {
    pub stack: &'a mut S,
    pub case: &'a Case,
    pub users: BTreeMap<String, Uuid>,
    pub tokens: BTreeMap<String, String>,
    pub service_key: String,
    pub secret: Secret,
    pub project: Uuid,
    pub sessions: BTreeMap<String, Session>,
    /// Signed URLs kept by `sign ... as LINK`.
    pub links: BTreeMap<String, String>,
    /// Binary files' content hashes, by path.
    pub binaries: BTreeMap<String, String>,
    pub flags: Flags,
    pub observer: Option<Observer>,
    pub transcript: Transcript,
}

/// Runs `case` on `stack`.
pub async fn run<S: Stack>(case: &Case, stack: &mut S) -> Run {
    let secret = Secret::new(DEV_JWT_SECRET);
    let mut world = World {
        service_key: service_role_key(&secret),
        secret,
        case,
        users: BTreeMap::new(),
        tokens: BTreeMap::new(),
        project: Uuid::nil(),
        sessions: BTreeMap::new(),
        links: BTreeMap::new(),
        binaries: BTreeMap::new(),
        flags: case.setup.flags,
        observer: None,
        transcript: Transcript::default(),
        stack,
    };
    world.transcript.heading(&format!("scenario: {}", case.title));
    if let Err(e) = world.setup().await {
        world.transcript.line(format!("setup failed: {e}"));
        return Run { transcript: world.transcript.render(), mismatches: vec![] };
    }
    let mut mismatches = Vec::new();
    world.transcript.heading("steps");
    for step in &case.steps {
        let outcome = world.step(step).await;
        world.transcript.line(format!("{:>3}  {}  => {outcome}", step.line, step.text));
        if let Some(missed) = missed(step, &outcome) {
            mismatches.push(missed);
        }
    }
    settle::finish(&mut world).await;
    Run { transcript: world.transcript.render(), mismatches }
}

/// The expectation is met when the outcome begins with the expected words (spaces aside) and
/// the next character does not continue a word: `ok seq 5` is met by `ok seq 5: a v1`, not by
/// `ok seq 57`.
fn missed(step: &Step, outcome: &str) -> Option<Mismatch> {
    let expected = step.expect.as_deref()?;
    let (want, got) = (squeeze(expected), squeeze(outcome));
    let met = got.strip_prefix(&want).is_some_and(|rest| !rest.starts_with(|c: char| c.is_alphanumeric()));
    if met {
        return None;
    }
    Some(Mismatch { line: step.line, step: step.text.clone(), expected: expected.into(), actual: outcome.into() })
}

fn squeeze(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl<S: Stack> World<'_, S> {
    /// Server `n`'s API.
    pub fn api(&self, n: usize) -> Api {
        self.stack.api(n)
    }

    /// The token of actor `name`.
    pub fn token(&self, name: &str) -> &str {
        &self.tokens[name]
    }

    /// A signed-in user's token, valid for a day of the stack's time.
    fn user_token(&self, user: Uuid, name: &str) -> String {
        let email = format!("{name}@example.test");
        let claims = jwt::user_claims(&user.to_string(), &email, self.stack.clock().wall_s(), 24 * 3600);
        jwt::sign(&self.secret, &claims)
    }

    /// A container token of `session` (what the orchestrator gives its agent).
    pub fn container_token(&self, session: Uuid) -> String {
        let claims = jwt::container_claims(
            &session.to_string(),
            &self.project.to_string(),
            self.stack.clock().wall_s(),
            fsync_protocol::snapshot::CONTAINER_TOKEN_MAX_TTL_S,
        );
        jwt::sign(&self.secret, &claims)
    }

    /// The people, the project, its members and its fixture, all through the public API; then
    /// the observer joins.
    async fn setup(&mut self) -> Result<(), String> {
        let api = self.api(0);
        self.transcript.heading("people");
        for (i, actor) in self.case.actors.iter().enumerate() {
            let id = actor_id(&self.case.name, i);
            self.transcript.name(id, &actor.name);
            let args = json!({"p_user_id": id, "p_email": format!("{}@example.test", actor.name), "p_display_name": actor.name});
            self.service(&api, "ensure_user_profile", args).await?;
            self.tokens.insert(actor.name.clone(), self.user_token(id, &actor.name));
            self.users.insert(actor.name.clone(), id);
            self.transcript.line(format!("{} is {}", actor.name, actor.role.as_str()));
        }
        let owner = self.case.owner().name.clone();
        let args = json!({"p_name": self.case.name, "p_owner": self.users[&owner]});
        let project = self.service(&api, "create_project", args).await?;
        self.project = project["id"].as_str().and_then(|s| s.parse().ok()).ok_or("create_project: no id")?;
        self.transcript.name(self.project, "project");
        for actor in self.case.actors.iter().filter(|a| matches!(a.role, Role::Editor | Role::Viewer)) {
            let args = json!({"project_uuid": self.project, "p_user_id": self.users[&actor.name], "p_role": actor.role.as_str()});
            let reply =
                api.rpc(Some(self.token(&owner)), "add_project_member", args).await.map_err(|e| e.to_string())?;
            if !reply.is_success() {
                return Err(format!(
                    "add {} as {}: HTTP {} {}",
                    actor.name,
                    actor.role.as_str(),
                    reply.status,
                    reply.body
                ));
            }
        }
        // The observer hears everything from the first write on, the fixture's included.
        self.observer = Some(Observer::start(api.clone(), self.token(&owner).to_owned(), self.project));
        self.observer_back(0).await?;
        if let Some((size, seed)) = &self.case.setup.fixture {
            let loaded = crate::fixture::load(&api, self.token(&owner), self.project, size, *seed).await?;
            self.transcript.line(format!("{owner} loaded fixture {size} seed {seed}: {loaded}"));
        }
        Ok(())
    }

    /// Waits until the observer has joined more than `after` times.
    pub async fn observer_back(&mut self, after: u64) -> Result<(), String> {
        let patience = self.stack.patience();
        let observer = self.observer.as_mut().expect("the observer starts in setup");
        tokio::time::timeout(patience, observer.joined_after(after))
            .await
            .map_err(|_| format!("the observer did not join within {patience:?}"))
    }

    async fn service(&self, api: &Api, function: &str, args: Value) -> Result<Value, String> {
        let reply = api.rpc(Some(&self.service_key), function, args).await.map_err(|e| format!("{function}: {e}"))?;
        if !reply.is_success() {
            return Err(format!("{function}: HTTP {} {}", reply.status, reply.body));
        }
        Ok(reply.body)
    }
}

/// Actor `index`'s user id: the same on every stack and every run of the case.
fn actor_id(case: &str, index: usize) -> Uuid {
    let digest = fsync_protocol::hash::hex_sha256(format!("{case}/{index}").as_bytes());
    let bits = u128::from_str_radix(&digest[..32], 16).expect("hex digits");
    uuid::Builder::from_random_bytes(bits.to_be_bytes()).into_uuid()
}
